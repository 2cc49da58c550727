"""The SSD frozen graph -> an OpenVINO model cut before TensorFlow's post-processor, once, cached.

`openvino.convert_model` reads the TensorFlow frozen graph itself (no TensorFlow needed). camd keeps
the network (pixels -> per-anchor box encodings and class scores) and drops the graph's own
post-processor: its box decoding and NMS are a loop OpenVINO runs slowly, and it has a 0.3 score
threshold baked in that would override camd's lower `min_score` floor. camd decodes the 1917 anchors
and runs NMS in numpy instead (camd/vision/ssd.py), with the anchors saved beside the model.

int8: NNCF post-training quantization calibrated on frames camd can always get (the demo clip and the
face photos it prepares from registry packages, never ../shared). Quantization is deterministic for
these inputs; the record beside the model names the source graph's sha256, the precision, the
calibration frames' digest and the OpenVINO/NNCF versions, and the model files' own sha256, so a
second prepare does nothing and a changed source or a damaged file is converted again.

Precision is chosen by measurement (docs/performance.md); `detector.precision` picks it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence, Set
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from camd.assets import ensure_asset, locked, sha256_file
from camd.vision.openvino_setup import decline_telemetry, openvino

log = logging.getLogger(__name__)

Precision = Literal["f32", "bf16", "int8"]
INPUT_SIZE = 300
# Tensor names in the frozen graph (TF Object Detection API, ssd_mobilenet_v2_coco_2018_03_29).
INPUT_TENSOR = "image_tensor:0"
CUT_AT = "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3:0"  # resized float RGB, before normalizing
BOX_ENCODINGS = "concat:0"  # (1, 1917, 1, 4): what TF squeezes into `Squeeze:0`
CLASS_SCORES = "Postprocessor/convert_scores:0"  # (1, 1917, 91) sigmoid scores, class 0 background
ANCHORS = "Postprocessor/ExpandDims:0"  # the anchors (ymin, xmin, ymax, xmax), folded to a constant

MODEL_NAME = "ssd_cut.xml"
WEIGHTS_NAME = "ssd_cut.bin"
ANCHORS_NAME = "anchors.npy"
RECORD_NAME = "record.json"
FORMAT = 3  # bump when the cut, the pre-processing or the calibration recipe changes

CALIBRATION_FRAMES = 100
CALIBRATION_ASSETS = ("demo_bikes_clip", "face_photos")


class SsdConversionError(RuntimeError):
    """The frozen graph could not be converted or quantized. The message says what to do."""


def prepared_folder(models_dir: Path, source_sha: str, precision: Precision) -> Path:
    """Named by the graph's checksum: a changed graph file is converted again, never served stale, and
    the manifest's model and the same file given as a path share one conversion."""
    return Path(models_dir) / f"ssd_openvino_{source_sha[:12]}" / precision


def cached_model(graph: Path, models_dir: Path, precision: Precision) -> Path | None:
    """The prepared model when it is there, made from this graph at this precision, and intact."""
    source_sha = sha256_file(graph)
    folder = prepared_folder(models_dir, source_sha, precision)
    return folder / MODEL_NAME if _cached(folder, source_sha, precision) else None


def prepare_ssd_openvino(
    graph: Path, models_dir: Path, precision: Precision, *, local: Sequence[Path] = ()
) -> Path:
    """The cut model (.xml, with its .bin and anchors.npy beside it) for this graph at this precision:
    from the cache when its record matches, else converted (and, for int8, quantized) now."""
    graph = Path(graph)
    if not graph.is_file():
        raise SsdConversionError(f"SSD frozen graph {graph} not found; run `camd models prepare`")
    source_sha = sha256_file(graph)
    folder = prepared_folder(models_dir, source_sha, precision)
    if _cached(folder, source_sha, precision):
        return folder / MODEL_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SsdConversionError(f"cannot create {folder}: {exc}; check models_dir") from None
    with locked(folder.parent / ".lock"):
        if _cached(folder, source_sha, precision):  # another process converted it meanwhile
            return folder / MODEL_NAME
        if (folder / RECORD_NAME).exists():
            log.warning("the OpenVINO model in %s is damaged or out of date: converting again", folder)
        started = time.monotonic()
        log.info(
            "converting the SSD graph %s to OpenVINO %s (once; int8 takes about a minute)", graph, precision
        )
        calibration_digest = None
        with tempfile.TemporaryDirectory(prefix=".convert.", dir=folder) as work:
            model, anchors = convert_cut_model(graph)
            frames: list[np.ndarray] = []
            if precision == "int8":
                frames = calibration_frames(Path(models_dir), local=local)
                calibration_digest = _digest(frames)
                model = quantize(model, frames)
            model = with_uint8_bgr_input(model)
            _save(model, anchors, Path(work))
            record = {
                "format": FORMAT,
                "source_sha256": source_sha,
                "precision": precision,
                "calibration_sha256": calibration_digest,
                "calibration_frames": len(frames),
                "int8_recipe": _int8_recipe() if precision == "int8" else None,
                "openvino": _version("openvino"),
                "nncf": _version("nncf") if precision == "int8" else None,
                "files": {
                    name: sha256_file(Path(work) / name) for name in (MODEL_NAME, WEIGHTS_NAME, ANCHORS_NAME)
                },
            }
            for name in (MODEL_NAME, WEIGHTS_NAME, ANCHORS_NAME):
                os.chmod(Path(work) / name, 0o644)
                os.replace(Path(work) / name, folder / name)
            _write_json(folder / RECORD_NAME, record)
        log.info("SSD %s ready at %s (%.0f s)", precision, folder, time.monotonic() - started)
    return folder / MODEL_NAME


def convert_cut_model(graph: Path) -> tuple[Any, np.ndarray]:
    """(OpenVINO model: float RGB 0..255 NHWC 300x300 -> box encodings, class scores; anchors (1917, 4))."""
    try:
        ov = openvino()
        from openvino import opset13 as ops
    except ImportError as exc:
        raise SsdConversionError(
            f"the OpenVINO detector needs the openvino package ({exc}): pip install openvino"
        ) from None
    try:
        full = ov.convert_model(str(graph), input=[(INPUT_TENSOR, [1, INPUT_SIZE, INPUT_SIZE, 3])])
    except Exception as exc:  # OpenVINO's frontend raises plain Exceptions / its own types
        raise SsdConversionError(
            f"OpenVINO could not read the SSD frozen graph {graph}: it is damaged or not the TF Object "
            f"Detection API SSD camd expects ({str(exc).strip().splitlines()[-1][:200]}); re-prepare the "
            "model (delete its folder under models_dir) or fix detector.model"
        ) from None
    tensors: dict[str, Any] = {}
    for op in full.get_ordered_ops():
        for output in op.outputs():
            for name in output.get_names():
                tensors[name] = output
    missing = [name for name in (CUT_AT, BOX_ENCODINGS, CLASS_SCORES, ANCHORS) if name not in tensors]
    if missing:
        raise SsdConversionError(
            f"the SSD graph {graph} lacks the tensors {missing} camd cuts at: it is not a TF Object "
            "Detection API SSD exported like ssd_mobilenet_v2_coco; use detector.runtime: opencv for it"
        )
    anchors_node = tensors[ANCHORS].get_node()
    if anchors_node.get_type_name() != "Constant":
        raise SsdConversionError(
            f"the SSD graph {graph}: its anchors are not constant; use detector.runtime: opencv"
        )
    anchors = np.asarray(anchors_node.get_data(), dtype=np.float32).reshape(-1, 4)
    image = ops.parameter([1, INPUT_SIZE, INPUT_SIZE, 3], ov.Type.f32, name="image")
    for target in list(tensors[CUT_AT].get_target_inputs()):
        target.replace_source_output(image.output(0))
    boxes = ops.result(
        ops.reshape(tensors[BOX_ENCODINGS], ops.constant(np.array([1, -1, 4], np.int64)), False)
    )
    boxes.output(0).get_tensor().set_names({"boxes"})
    scores = ops.result(tensors[CLASS_SCORES])
    scores.output(0).get_tensor().set_names({"scores"})
    return ov.Model([boxes, scores], [image], "ssd_mobilenet_v2_cut"), anchors


def with_uint8_bgr_input(model: Any) -> Any:
    """The model takes the resized BGR uint8 frame as is: the type cast and channel swap run inside."""
    ov = openvino()
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
        ColorFormat.BGR
    )
    ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB)
    ppp.input().model().set_layout(ov.Layout("NHWC"))
    return ppp.build()


def resized_rgb(image: np.ndarray) -> np.ndarray:
    """A BGR frame as the cut model's float input before the uint8 wrapper (calibration)."""
    import cv2

    small = cv2.resize(image, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    return small[None, :, :, ::-1].astype(np.float32)


def calibration_frames(models_dir: Path, *, local: Sequence[Path] = ()) -> list[np.ndarray]:
    """CALIBRATION_FRAMES BGR frames camd can always get, and a quarter as many mosaics of them: evenly
    spaced frames of the demo clip (cars in traffic) and the face photos with their mirror images
    (people, close up), both from registry packages. The same files give the same frames, so the
    quantization is repeatable."""
    import av
    import cv2

    clip = ensure_asset("demo_bikes_clip", models_dir, local=local)  # a one-file asset: the file
    photos_dir = ensure_asset("face_photos", models_dir, local=local)
    photos = []
    for path in sorted(photos_dir.glob("*.jpg")):
        image = cv2.imread(str(path))
        if image is not None:
            photos += [image, np.ascontiguousarray(image[:, ::-1])]
    with av.open(str(clip)) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    wanted = CALIBRATION_FRAMES - len(photos)
    picks = np.linspace(0, len(frames) - 1, wanted).round().astype(int)
    chosen = [frames[i] for i in picks] + photos
    return chosen + mosaics(chosen)


def mosaics(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Four frames at half size in one: the same scenes with every object smaller, so the int8 ranges
    also fit the small, far objects camd needs (measured: fewer lost person boxes on real footage)."""
    import cv2

    out = []
    for i in range(0, len(frames) - 3, 4):
        tiles = [cv2.resize(frame, (320, 240), interpolation=cv2.INTER_AREA) for frame in frames[i : i + 4]]
        out.append(np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])]))
    return out


def quantize(model: Any, frames: list[np.ndarray]) -> Any:
    decline_telemetry()  # NNCF reports usage through the same package
    try:
        import nncf
    except ImportError as exc:
        raise SsdConversionError(
            f"the int8 SSD is made once with NNCF ({exc}): pip install 'camd[prepare]' and run "
            "`camd models prepare`, or set detector.precision: f32"
        ) from None
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    logging.getLogger("nncf").setLevel(logging.WARNING)
    dataset = nncf.Dataset(frames, resized_rgb)
    overflow = OverflowFix.ENABLE if _int8_recipe() == "overflow_fix" else OverflowFix.FIRST_LAYER
    # MIXED (asymmetric activations) with the mosaics kept the most person boxes of the recipes
    # tried (docs/performance.md); PERFORMANCE, without mosaics or without fast bias correction lost more.
    return nncf.quantize(
        model,
        dataset,
        subset_size=len(frames),
        preset=nncf.QuantizationPreset.MIXED,
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow),
    )


def _save(model: Any, anchors: np.ndarray, folder: Path) -> None:
    ov = openvino()

    ov.save_model(model, str(folder / MODEL_NAME), compress_to_fp16=False)
    np.save(folder / ANCHORS_NAME, anchors)


def saturating_int8(cpu_flags: Set[str] | None = None) -> bool:
    """Whether this CPU multiplies int8 with instructions whose 16-bit sums saturate: x86 without VNNI
    (AVX2 only: many small hubs). There NNCF's overflow fix (7-bit weights everywhere, not only in the
    first layer) avoids the saturation: walking's person boxes kept 84.8% -> 91.3% on an AVX2 CPU
    (docs/performance.md). VNNI and AMX accumulate in 32 bits and keep the 8th bit's precision."""
    flags = cpu_flags if cpu_flags is not None else _cpu_flags()
    x86 = "avx2" in flags or "sse4_2" in flags
    return x86 and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


@cache
def _cpu_flags() -> frozenset[str]:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:  # not Linux: NNCF's default
        return frozenset()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def _int8_recipe() -> str:
    return "overflow_fix" if saturating_int8() else "first_layer_fix"


def _cached(folder: Path, source_sha: str, precision: Precision) -> bool:
    try:
        record = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return False
    if record.get("source_sha256") != source_sha or record.get("precision") != precision:
        return False
    if precision == "int8" and record.get("int8_recipe") != _int8_recipe():
        return False  # quantized for another CPU class (a copied models_dir, or one from before)
    files = record.get("files")
    if not isinstance(files, dict):
        return False
    return all((folder / name).is_file() and sha256_file(folder / name) == files.get(name)
               for name in (MODEL_NAME, WEIGHTS_NAME, ANCHORS_NAME))  # fmt: skip


def _digest(frames: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(str(frame.shape).encode())
        digest.update(np.ascontiguousarray(frame).tobytes())
    return digest.hexdigest()


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _write_json(path: Path, value: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(value, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(temp, path)
