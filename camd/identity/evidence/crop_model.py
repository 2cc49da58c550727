"""The base of every ONNX model camd runs on person or vehicle crops (body appearance, OSNet, vehicles):
an onnxruntime session tuned for a hub that also runs the detector, and the crop preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from camd.identity.evidence._crops import require_file

_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Every normalised value a uint8 pixel can become, per RGB channel, computed with the very float32 steps
# of (v / 255 - mean) / std: a table look-up gives bit-identical inputs for a third of the preprocessing
# CPU (benchmarks/identity_runtimes.py).
_NORMALISED = ((np.arange(256, dtype=np.float32)[None, :] / 255.0 - _MEAN[:, None]) / _STD[:, None]).astype(
    np.float32
)


def _session(path: Path, threads: int):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle worker threads must not spin: the detector runs right after on the same 2 cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Batches of 1..16 crops: a memory pattern cached per batch shape held ~80 MB more RSS, for no speed
    # (benchmarks/native_memory.py, docs/performance.md "Soak").
    options.enable_mem_pattern = False
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxCropModel:
    """An ONNX image model run on BGR crops, each resized to the model's fixed input (N, 3, H, W) and
    ImageNet-normalised as RGB; returns the model's first output for the whole batch."""

    def __init__(self, onnx_path: str | Path, what: str, threads: int = 2, batch_size: int = 16) -> None:
        self.path = require_file(onnx_path, what)
        self._session = _session(self.path, threads)
        shape = self._session.get_inputs()[0].shape
        self.input_hw = (int(shape[2]), int(shape[3]))
        self._input = self._session.get_inputs()[0].name
        self.output_shape = self._session.get_outputs()[0].shape
        self.batch_size = batch_size

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        height, width = self.input_hw
        batch = np.empty((len(crops), 3, height, width), dtype=np.float32)
        for i, crop in enumerate(crops):
            small = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
            for channel in range(3):  # RGB out of BGR
                np.take(_NORMALISED[channel], small[:, :, 2 - channel], out=batch[i, channel], mode="clip")
        return batch

    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        outputs = []
        for start in range(0, len(crops), self.batch_size):
            batch = self.preprocess(crops[start : start + self.batch_size])
            outputs.append(self._session.run(None, {self._input: batch})[0])
        return np.concatenate(outputs, axis=0)
