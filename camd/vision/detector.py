"""The detector contract and the factory that picks a backend from the config.

A detector takes a full BGR uint8 frame and returns every camd-labelled object it sees with a
score >= its min_score floor, boxes in frame pixels. The floor is low on purpose: ByteTrack
uses the low-score boxes in its second association stage; the per-label min_score of the
config is applied later, by the tracker stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from camd.assets import AssetError, ensure_asset, load_manifest
from camd.config.schema import DetectorConfig, ObjectsConfig
from camd.geometry import clip_box  # noqa: F401  (the backends import it from here; it lives in camd.geometry)
from camd.types import Detection

DEFAULT_MODELS = {"ssd": "ssd_mobilenet_v2_coco", "yolo": "yolov8s_person"}
DEFAULT_MIN_SCORE = 0.25


class DetectorError(RuntimeError):
    """A detector model could not be found, loaded or run. The message says what to do."""


@runtime_checkable
class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """BGR uint8 HxWx3 frame in; detections with pixel boxes clipped to the frame out."""
        ...


def create_detector(
    config: DetectorConfig, models_dir: Path, min_score: float = DEFAULT_MIN_SCORE
) -> Detector:
    """Build the configured backend. `config.model` is a manifest id (prepared on first use into
    models_dir) or a file path; None picks the backend's default model."""
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must be within 0..1, got {min_score}")
    model = config.model or DEFAULT_MODELS[config.backend]
    manifest = load_manifest()
    if model in manifest:
        asset = manifest[model]
        if asset.kind != "model":
            raise DetectorError(f"detector.model {model!r} is a {asset.kind} asset, not a model")
        if asset.backend and asset.backend != config.backend:
            raise DetectorError(
                f"detector.model {model!r} is a {asset.backend!r} model but detector.backend is "
                f"{config.backend!r}; set backend: {asset.backend}"
            )
        try:
            path = ensure_asset(model, models_dir)
        except AssetError as exc:
            raise DetectorError(f"cannot prepare detector model {model!r}: {exc}") from exc
        class_map = asset.class_map
    else:
        path = Path(model).expanduser()
        if not path.exists():
            raise DetectorError(
                f"detector.model {model!r} is neither a model id in the manifest ({sorted(manifest)}) "
                "nor an existing file; give a manifest id or the path of your exported model"
            )
        class_map = None

    if config.backend == "ssd":
        from camd.vision.ssd import SsdDetector

        return SsdDetector(path, threads=config.threads, min_score=min_score, input_size=config.input_size)
    from camd.vision.yolo import YoloDetector

    return YoloDetector(
        path,
        threads=config.threads,
        min_score=min_score,
        nms_iou=config.nms_iou,
        class_map=config.class_map or class_map,
        input_size=config.input_size,
    )


def detect_batch(detector: Detector, images: list[np.ndarray]) -> list[list[Detection]]:
    """One list of detections per image: in one call when the backend batches, else one call each."""
    batched = getattr(detector, "detect_batch", None)
    if batched is not None:
        return list(batched(images))
    return [detector.detect(image) for image in images]


def filter_detections(detections: list[Detection], objects: ObjectsConfig) -> list[Detection]:
    """Keep the labels the camera tracks and drop boxes below the label's min_area.
    Score is left alone: the tracker stage applies min_score after using the low boxes."""
    tracked = set(objects.track)
    return [
        det
        for det in detections
        if det.label in tracked and det.area >= objects.filter_for(det.label).min_area
    ]


def check_image(image: object) -> np.ndarray:
    """The frame every detector accepts: a BGR uint8 array HxWx3, not empty."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"detector input must be a numpy array (BGR image), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"detector input must be uint8 (0..255 BGR), got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"detector input must be HxWx3 (BGR), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"detector input is empty (shape {image.shape})")
    return image

