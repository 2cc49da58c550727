"""The detector contract, on its own so every backend can import it without importing the factory.

A detector takes a full BGR uint8 frame and returns every camd-labelled object it sees with a
score >= its min_score floor, boxes in frame pixels. The floor is low on purpose: ByteTrack
uses the low-score boxes in its second association stage; the per-label min_score of the
config is applied later, by the tracker stage.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from camd.geometry import clip_box
from camd.types import Detection

__all__ = ["Detector", "DetectorError", "check_image", "clip_box"]


class DetectorError(RuntimeError):
    """A detector model could not be found, loaded or run. The message says what to do."""


@runtime_checkable
class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """BGR uint8 HxWx3 frame in; detections with pixel boxes clipped to the frame out."""
        ...


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
