"""Run-time OSNet body embedder: the ONNX file `prepare_osnet` made, run with onnxruntime (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from camd.identity.evidence._crops import check_crops, l2_normalise
from camd.identity.evidence.body import OnnxCropModel
from camd.identity.evidence.osnet import EMBEDDING_DIM


class OSNetEmbedder:
    """L2-normalised 512-d re-ID features of person crops (BGR uint8, any size), compared by cosine.

    Each crop is stretched to 256x128 like torchreid's training crops. The matcher treats it like any body
    vector (centred on the crowd mean once enough sightings were seen); what that does to a trained re-ID
    embedding has not been measured here, since no trained weights are obtainable offline.
    """

    def __init__(self, onnx_path: str | Path, threads: int = 2, name: str = "osnet") -> None:
        self.model = OnnxCropModel(onnx_path, "OSNet ONNX body model", threads=threads)
        width = self.model.output_shape[-1]
        if len(self.model.output_shape) != 2 or width != EMBEDDING_DIM:
            raise ValueError(
                f"{onnx_path}: output shape {self.model.output_shape} is not (batch, {EMBEDDING_DIM}); "
                "not an OSNet embedder made by camd; delete it and run `camd models prepare` again"
            )
        self.name = name
        self.dim = EMBEDDING_DIM

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        check_crops(crops, self.name)
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(self.model(crops))
