"""Shared checks and conversions for the BGR uint8 crops every extractor takes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def check_crops(crops: Sequence[np.ndarray], who: str) -> None:
    """Raise a clear ValueError unless every crop is a non-empty HxWx3 uint8 (BGR) image."""
    for i, crop in enumerate(crops):
        if not isinstance(crop, np.ndarray) or crop.ndim != 3 or crop.shape[2] != 3:
            shape = getattr(crop, "shape", type(crop).__name__)
            raise ValueError(f"{who}: crop {i} must be an HxWx3 BGR image, got {shape}")
        if crop.dtype != np.uint8:
            raise ValueError(f"{who}: crop {i} must be uint8, got {crop.dtype}")
        if crop.shape[0] < 2 or crop.shape[1] < 2:
            raise ValueError(f"{who}: crop {i} is too small ({crop.shape[1]}x{crop.shape[0]} px)")


def require_file(path: str | Path, what: str) -> Path:
    """The path as a Path, or FileNotFoundError naming the model and where it comes from."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} not found at {path} (see models/manifest.yaml for how to prepare it)"
        )
    return path


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def crop_box(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The pixels of `box` (x1, y1, x2, y2), clipped to the image; empty boxes raise ValueError."""
    height, width = image.shape[:2]
    x1, y1 = max(0, round(box[0])), max(0, round(box[1]))
    x2, y2 = min(width, round(box[2])), min(height, round(box[3]))
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise ValueError(f"box {tuple(box)} leaves no pixels inside a {width}x{height} image")
    return image[y1:y2, x1:x2]
