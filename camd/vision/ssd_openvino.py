"""The COCO SSD MobileNetV2 through OpenVINO on the CPU: camd's default detector.

The model is the frozen graph cut before TensorFlow's post-processor and converted once at prepare
time (camd/modelprep/ssd_openvino.py), at the configured precision. Here: resize to 300x300, one inference,
then camd's own box decoding and NMS (camd/vision/ssd.py) with camd's min_score floor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camd.types import Detection
from camd.vision.openvino_setup import openvino
from camd.vision.protocol import DetectorError, check_image
from camd.vision.ssd import DEFAULT_INPUT_SIZE, decode


def openvino_core() -> Any:
    try:
        ov = openvino()
    except ImportError as exc:
        raise DetectorError(
            f"detector.runtime openvino needs the openvino package ({exc}): pip install openvino, or set "
            "detector.runtime: opencv (SSD) / onnxruntime (YOLO)"
        ) from None
    return ov.Core()


def compile_cpu(core: Any, model: Any, threads: int, hint: str) -> Any:
    """Compiled for the CPU with an explicit inference precision: OpenVINO otherwise picks bf16 on CPUs
    that have it, silently changing scores. One stream, latency mode: one frame at a time per worker."""
    return core.compile_model(
        model,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": hint,
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
        },
    )


def ready_request(compiled: Any) -> Any:
    """An infer request that has already run once, on zeros, in the thread that made it.

    OpenVINO's Python binding initialises a function-local static on the first copy into an input
    tensor, and gives up the GIL while doing so: two threads making that first copy at once can
    deadlock (one holds the static's guard and waits for the GIL, the other holds the GIL and waits
    for the guard). Seen with `detector.workers: 2`: the whole daemon froze, about one start in five
    in tests/test_detector_openvino.py's race. The pool makes its detectors one after another in one
    thread, so this first inference is never raced; it also takes the first call's cost off the
    first frame."""
    request = compiled.create_infer_request()
    port = compiled.input(0)
    dims = [dim.get_length() if dim.is_static else (1 if i == 0 else 64)
            for i, dim in enumerate(port.get_partial_shape())]  # fmt: skip
    request.infer({0: np.zeros(dims, port.get_element_type().to_dtype())})
    return request


class OpenVinoSsdDetector:
    """precision: 'f32', 'int8' (NNCF) or 'bf16' (the f32 model run in bf16)."""

    name = "ssd"
    runtime = "openvino"

    def __init__(
        self, model_xml: Path, *, threads: int = 2, min_score: float = 0.25, precision: str = "f32"
    ) -> None:
        core = openvino_core()
        model_xml = Path(model_xml)
        try:
            model = core.read_model(str(model_xml))
            self._anchors = np.load(model_xml.parent / "anchors.npy").astype(np.float32)
        except Exception as exc:  # OpenVINO raises its own untyped errors
            raise DetectorError(
                f"OpenVINO could not load the prepared SSD model {model_xml} ({str(exc).strip()[:200]}); "
                "delete that folder and run `camd models prepare` again"
            ) from None
        # int8 layers run in int8 whatever the hint; f32 keeps the rest (and a plain model) exact.
        self._compiled = compile_cpu(core, model, threads, "bf16" if precision == "bf16" else "f32")
        self._request = ready_request(self._compiled)
        self.precision = precision
        self.min_score = min_score
        self._size = DEFAULT_INPUT_SIZE

    def detect(self, image: np.ndarray) -> list[Detection]:
        check_image(image)
        height, width = image.shape[:2]
        small = cv2.resize(image, (self._size, self._size), interpolation=cv2.INTER_LINEAR)
        outputs = self._request.infer({0: small[None]})
        encodings = np.asarray(outputs[0]).reshape(-1, 4)
        scores = np.asarray(outputs[1]).reshape(encodings.shape[0], -1)
        return decode(encodings, scores, self._anchors, self.min_score, width, height)

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        return [self.detect(image) for image in images]
