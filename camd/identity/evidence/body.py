"""Body appearance embedding of a person crop: an ImageNet MobileNetV2 backbone run through onnxruntime.

No trained person re-ID weights ship in any registry package, so the backbone is generic. Measured on
reid/train (docs/identity.md): a mid-level block (features.14) beats the final layer, and pooling its
feature map row by row (8 horizontal stripes, head to feet) keeps the where-on-the-body layout that a global
pool throws away: rank-1 0.55 against 0.16 for the same block pooled globally.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from camd.identity.evidence._crops import check_crops, l2_normalise, require_file

if TYPE_CHECKING:
    from camd.config.schema import IdentityConfig

_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


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
            rgb = cv2.cvtColor(
                cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB
            )
            batch[i] = ((rgb.astype(np.float32) / 255.0 - _MEAN) / _STD).transpose(2, 0, 1)
        return batch

    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        outputs = []
        for start in range(0, len(crops), self.batch_size):
            batch = self.preprocess(crops[start : start + self.batch_size])
            outputs.append(self._session.run(None, {self._input: batch})[0])
        return np.concatenate(outputs, axis=0)


class MobileNetV2Features(OnnxCropModel):
    """The MobileNetV2 feature map (N, C, H/32, W/32) of BGR crops, resized to the model's input."""

    def __init__(self, onnx_path: str | Path, threads: int = 2, batch_size: int = 16) -> None:
        super().__init__(onnx_path, "MobileNetV2 ONNX feature extractor", threads, batch_size)


def stripe_pool(features: np.ndarray, stripes: int) -> np.ndarray:
    """Average-pool a (N, C, H, W) map over `stripes` horizontal bands, each band L2-normalised.

    Each band is normalised before the whole, so every band weighs the same in the cosine similarity;
    stripes=1 is the plain global average pool.
    """
    if not 1 <= stripes <= features.shape[2]:
        raise ValueError(f"stripes must be 1..{features.shape[2]} for a map {features.shape[2]} rows high")
    bands = np.array_split(np.arange(features.shape[2]), stripes)
    parts = [l2_normalise(features[:, :, band, :].mean(axis=(2, 3))) for band in bands]
    return l2_normalise(np.concatenate(parts, axis=1))


class BodyAppearanceEmbedder:
    """L2-normalised appearance vector of person crops (BGR uint8, any size); cosine similarity compares them.

    `stripes` trades: more bands keep more layout (shirt vs trousers, head vs feet) but are more sensitive
    to a box cut short or badly aligned; one band per feature-map row (the default, 8 for a 256x128 input)
    measured best on reid/train: 0.55 rank-1 vs 0.40 with 4 bands.
    """

    name = "mobilenetv2-rows"

    def __init__(self, onnx_path: str | Path, threads: int = 2, stripes: int | None = None) -> None:
        self.features = MobileNetV2Features(onnx_path, threads=threads)
        output = self.features.output_shape
        channels, rows = int(output[1]), int(output[2])
        self.stripes = rows if stripes is None else stripes
        if not 1 <= self.stripes <= rows:
            raise ValueError(
                f"stripes must be 1..{rows} for this model (its feature map is {rows} rows high)"
            )
        self.dim = channels * self.stripes

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        check_crops(crops, self.name)
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        return stripe_pool(self.features(crops), self.stripes)


# -- choosing the backbone (identity.body_model) ------------------------------------------------------

MOBILENET_SPACE = "mobilenetv2"
MOBILENET_DIM = 1280  # features.14: 160 channels x 8 rows


class BodyEmbedder(Protocol):
    name: str
    dim: int

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray: ...


def body_space(identity: IdentityConfig) -> str:
    """The vector space body embeddings of this config live in. Vectors of different backbones, or of
    different weights of one backbone, are not comparable, so the memory keeps each space apart."""
    if identity.body_model == "osnet":
        from camd.identity.evidence.osnet.prepare import space_id

        return space_id(identity.osnet)
    return MOBILENET_SPACE


def body_dim(identity: IdentityConfig) -> int:
    if identity.body_model == "osnet":
        from camd.identity.evidence.osnet import EMBEDDING_DIM

        return EMBEDDING_DIM
    return MOBILENET_DIM


def load_body_embedder(identity: IdentityConfig, models_dir: Path, threads: int = 2) -> BodyEmbedder:
    """The configured body embedder, its model prepared first if needed (OSNet: download + convert once)."""
    if identity.body_model == "osnet":
        from camd.identity.evidence.osnet.embedder import OSNetEmbedder
        from camd.identity.evidence.osnet.prepare import prepare_osnet

        return OSNetEmbedder(
            prepare_osnet(identity.osnet, models_dir), threads=threads, name=body_space(identity)
        )
    from camd.identity.model_files import model_file

    return BodyAppearanceEmbedder(model_file(models_dir, "appearance_onnx"), threads=threads)
