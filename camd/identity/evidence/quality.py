"""Best-crop scoring: which of a track's frames are worth embedding and keeping.

A crop is worth more when it is large, sharp, whole (not cut by the frame edge) and unobstructed (not
overlapped by another detection, whose pixels would leak into the embedding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from camd.geometry import covered_share
from camd.identity.evidence._crops import crop_box
from camd.types import Box

# Box height (px) at which size stops adding quality: about what the embedders resize to.
FULL_SIZE_PX = 128.0
# Laplacian variance (measured at FULL_SIZE_PX height) at which sharpness counts half; motion blur and
# out-of-focus night frames fall well below it.
HALF_SHARPNESS = 60.0
# A box closer than this to the frame border is taken as cut off by it.
EDGE_MARGIN_PX = 2.0
# Multiplier for a crop cut by the frame edge: still usable, but a whole one is preferred.
TRUNCATED_FACTOR = 0.3


@dataclass(frozen=True, slots=True)
class CropQuality:
    score: float  # 0..1, product of the terms below
    size: float  # 0..1, box height over FULL_SIZE_PX
    sharpness: float  # 0..1
    truncated: bool  # touches the frame border
    overlap: float  # 0..1, share of this box covered by the most-overlapping other box


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the crop scaled to FULL_SIZE_PX high (scale-independent blur measure)."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    scale = FULL_SIZE_PX / grey.shape[0]
    grey = cv2.resize(
        grey,
        (max(2, round(grey.shape[1] * scale)), round(FULL_SIZE_PX)),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def crop_quality(frame: np.ndarray, box: Box, other_boxes: Sequence[Box] = ()) -> CropQuality:
    """Score the crop of `box` in `frame`; `other_boxes` are the frame's other detections (this box may be
    among them: identical boxes are skipped)."""
    height, width = frame.shape[:2]
    crop = crop_box(frame, box)
    size = min(1.0, (box[3] - box[1]) / FULL_SIZE_PX)
    lap = sharpness(crop)
    sharp = lap / (lap + HALF_SHARPNESS)
    truncated = (
        box[0] <= EDGE_MARGIN_PX
        or box[1] <= EDGE_MARGIN_PX
        or box[2] >= width - EDGE_MARGIN_PX
        or box[3] >= height - EDGE_MARGIN_PX
    )
    overlap = max((covered_share(box, o) for o in other_boxes if tuple(o) != tuple(box)), default=0.0)
    score = size * sharp * (TRUNCATED_FACTOR if truncated else 1.0) * (1.0 - overlap)
    return CropQuality(float(score), float(size), float(sharp), bool(truncated), float(overlap))
