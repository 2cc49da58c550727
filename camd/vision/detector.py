"""The factory that picks a detector backend and runtime from the config, and helpers all callers share.

The contract itself (Detector, DetectorError, check_image) lives in camd/vision/protocol.py so the
backends import it without importing this factory; it is re-exported here for callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from camd.assets import AssetError, ensure_asset, load_manifest
from camd.config.schema import DetectorConfig, ObjectsConfig
from camd.geometry import clip_box  # noqa: F401  (older callers import it from here; it lives in camd.geometry)
from camd.types import Detection
from camd.vision.protocol import Detector, DetectorError, check_image

__all__ = [
    "Detector",
    "DetectorError",
    "check_image",
    "create_detector",
    "detect_batch",
    "filter_detections",
    "prepare_detector",
]

DEFAULT_MODELS = {"ssd": "ssd_mobilenet_v2_coco", "yolo": "yolov8s_person"}
DEFAULT_MIN_SCORE = 0.25


def create_detector(
    config: DetectorConfig, models_dir: Path, min_score: float = DEFAULT_MIN_SCORE
) -> Detector:
    """Build the configured backend. `config.model` is a manifest id (prepared on first use into
    models_dir) or a file path; None picks the backend's default model."""
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must be within 0..1, got {min_score}")
    path, class_map = _model_files(config, models_dir)
    precision = precision_of(config)
    if config.backend == "ssd" and config.runtime == "openvino":
        from camd.vision.ssd_openvino import OpenVinoSsdDetector

        xml = _openvino_ssd(config, path, models_dir)
        return OpenVinoSsdDetector(xml, threads=config.threads, min_score=min_score, precision=precision)
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
        runtime=config.runtime,
        precision=precision,
    )


def prepare_detector(config: DetectorConfig, models_dir: Path, *, local: Sequence[Path] = ()) -> str:
    """What `camd models prepare` does for the detector: fetch its model and, for the OpenVINO SSD,
    convert (and quantize) it once. Returns what is ready, in words."""
    path, _ = _model_files(config, models_dir, local=local)
    if config.backend == "ssd" and config.runtime == "openvino":
        path = _openvino_ssd(config, path, models_dir, local=local)
    return f"{config.backend} on {config.runtime} ({precision_of(config)}), {path}"


def precision_of(config: DetectorConfig) -> str:
    """'auto' for the SSD on OpenVINO: bf16 where the CPU computes it natively (OpenVINO's own choice
    there), else f32. Measured (docs/performance.md): bf16 differs from the fp32 reference no more than
    a visually lossless re-encode of the same footage does, at 4.2x OpenCV DNN's speed (f32 2.3x). int8
    differs more (walking: 91-92% of confident person boxes kept, against 97.7% for the re-encode): a
    setting away."""
    if config.precision != "auto":
        return config.precision
    native = config.backend == "ssd" and config.runtime == "openvino" and native_bf16()
    return "bf16" if native else "f32"


@cache
def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bf16 natively here (AVX512_BF16 or AMX). Elsewhere bf16
    would be emulated, slower than f32."""
    try:
        from camd.vision.openvino_setup import openvino

        return "BF16" in openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # no openvino, or a plugin that cannot say: the exact f32
        return False


def _model_files(
    config: DetectorConfig, models_dir: Path, *, local: Sequence[Path] = ()
) -> tuple[Path, dict[int, str] | None]:
    """(the model's file or folder, the manifest's class map or None for a path)."""
    model = config.model or DEFAULT_MODELS[config.backend]
    manifest = load_manifest()
    if model not in manifest:
        path = Path(model).expanduser()
        if not path.exists():
            raise DetectorError(
                f"detector.model {model!r} is neither a model id in the manifest ({sorted(manifest)}) "
                "nor an existing file; give a manifest id or the path of your exported model"
            )
        return path, None
    asset = manifest[model]
    if asset.kind != "model":
        raise DetectorError(f"detector.model {model!r} is a {asset.kind} asset, not a model")
    if asset.backend and asset.backend != config.backend:
        raise DetectorError(
            f"detector.model {model!r} is a {asset.backend!r} model but detector.backend is "
            f"{config.backend!r}; set backend: {asset.backend}"
        )
    try:
        path = ensure_asset(model, models_dir, local=local)
    except AssetError as exc:
        raise DetectorError(f"cannot prepare detector model {model!r}: {exc}") from exc
    return path, asset.class_map


def _openvino_ssd(
    config: DetectorConfig, path: Path, models_dir: Path, *, local: Sequence[Path] = ()
) -> Path:
    """The cut SSD model's .xml, converted (and quantized) now when `camd models prepare` has not."""
    from camd.modelprep.ssd_openvino import INPUT_SIZE, SsdConversionError, prepare_ssd_openvino
    from camd.vision.ssd import find_ssd_files

    if config.input_size not in (None, INPUT_SIZE):
        raise DetectorError(
            f"detector.input_size {config.input_size}: the OpenVINO SSD is prepared at "
            f"{INPUT_SIZE}x{INPUT_SIZE} (its anchors are fixed); remove input_size (detector.far finds "
            "far people) or set runtime: opencv"
        )
    graph, _ = find_ssd_files(path)
    try:
        # bf16 is how the f32 model runs (a compile hint): it shares the f32 files.
        stored = "int8" if precision_of(config) == "int8" else "f32"
        return prepare_ssd_openvino(graph, models_dir, stored, local=local)
    except SsdConversionError as exc:
        raise DetectorError(str(exc)) from None


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
