"""Run-time OSNet body embedder: the ONNX file camd prepared from torchreid weights (camd/modelprep/osnet.py),
run with onnxruntime, no torch.

OSNet (Zhou et al., ICCV 2019) is trained for person re-identification. camd embeds every crop twice in one
batch, in colour and in greyscale, and keeps both halves side by side in one vector (each half unit
length, scaled by 1/sqrt(2), so the plain cosine of two vectors is the mean of the halves' cosines). Why
both (docs/identity.md, "Colour between cameras"): on reid/train, colour wins within one camera and
greyscale wins across two cameras whose white balance differs, and a camera in IR night mode is grey.
The matcher picks per pair of sightings how much of each half to use (camd/identity/body_compare.py).

An adapted network (`camd adapt`, docs/adaptation.md) serves the colour half only: the greyscale half keeps
the shipped network (`grey_onnx`), which already carries people across a colour cast and IR, and which
fine-tuning on a house's cameras made worse. Then each half is one pass of its own network, and a crop
with no colour (an IR camera) gets the grey half's embedding in both halves, as one network gives it:
equal halves are how the matcher knows a sighting is IR (body_compare.IR_HALVES_COSINE).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from camd.identity.evidence._crops import check_crops, l2_normalise
from camd.identity.evidence.crop_model import OnnxCropModel

EMBEDDING_DIM = 512  # every torchreid OSNet variant ends in a 512-wide fc layer
INPUT_HW = (256, 128)  # height, width: torchreid's re-ID training size
HALF = 1.0 / np.sqrt(2.0)
# Mean |crop - its greyscale copy| (grey levels) below which a crop has no colour. One network's halves
# pass IR_HALVES_COSINE from about here down (reid/train crops blended towards grey: 0.41 -> 44% of them,
# 0.11 -> 91%); reid/train's colour crops are all above 1.2.
COLOURLESS = 0.5


def greyscale(crop: np.ndarray) -> np.ndarray:
    """A BGR crop as grey in three channels: what an IR camera sees, and what no colour cast touches."""
    return cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


class OSNetEmbedder:
    """L2-normalised 1024-d vectors of person crops (BGR uint8, any size): 512 from the colour crop then
    512 from its greyscale copy; compare by cosine (whole, or half by half).

    Each crop is stretched to 256x128 like torchreid's training crops. `grey_onnx`: another OSNet for the
    greyscale half (None: the same network embeds both).
    """

    def __init__(
        self,
        onnx_path: str | Path,
        threads: int = 2,
        name: str = "osnet",
        grey_onnx: str | Path | None = None,
    ) -> None:
        self.model = _osnet(onnx_path, threads)
        self.grey_model = None if grey_onnx is None else _osnet(grey_onnx, threads)
        self.name = name
        self.dim = 2 * EMBEDDING_DIM

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        check_crops(crops, self.name)
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        greys = [greyscale(c) for c in crops]
        if self.grey_model is None:
            both = l2_normalise(self.model([*crops, *greys]))
            colour, grey = both[: len(crops)], both[len(crops) :]
        else:
            grey = l2_normalise(self.grey_model(greys))
            colour = grey.copy()
            coloured = [i for i, (c, g) in enumerate(zip(crops, greys, strict=True)) if not _colourless(c, g)]
            if coloured:
                colour[coloured] = l2_normalise(self.model([crops[i] for i in coloured]))
        return (np.hstack([colour, grey]) * HALF).astype(np.float32)


def _colourless(crop: np.ndarray, grey: np.ndarray) -> bool:
    return float(np.abs(crop.astype(np.int16) - grey.astype(np.int16)).mean()) < COLOURLESS


def _osnet(onnx_path: str | Path, threads: int) -> OnnxCropModel:
    model = OnnxCropModel(onnx_path, "OSNet ONNX body model", threads=threads)
    if len(model.output_shape) != 2 or model.output_shape[-1] != EMBEDDING_DIM:
        raise ValueError(
            f"{onnx_path}: output shape {model.output_shape} is not (batch, {EMBEDDING_DIM}); "
            "not an OSNet embedder made by camd; delete it and run `camd models prepare` again"
        )
    return model
