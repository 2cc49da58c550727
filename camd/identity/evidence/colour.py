"""Clothing colour descriptors: HSV histograms of the upper and lower body of a person crop.

Colour is cheap, survives a small crop far better than texture, and carries much of what tells two
people apart in the same scene; it fails under night IR (no hue) and strong colour casts.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from camd.identity.evidence._crops import check_crops, l2_normalise

# Bands of a standing person's box, as fractions of its height; the head and feet are left out (hair,
# skin and floor say little about clothing), and the side margins (background) too.
UPPER_BAND = (0.15, 0.50)
LOWER_BAND = (0.50, 0.90)
SIDE_MARGIN = 0.15


def hsv_histogram(region: np.ndarray, hue_bins: int = 8, sat_bins: int = 4, val_bins: int = 4) -> np.ndarray:
    """A hue x saturation histogram of coloured pixels plus a brightness histogram of grey ones.

    Greys (low saturation) have no meaningful hue, so they go to their own value-only bins instead of
    polluting the hue bins: black trousers and white shirts stay distinguishable.
    """
    hsv = cv2.cvtColor(region, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.float32)
    hue, sat, val = hsv[:, 0] / 180.0, hsv[:, 1] / 255.0, hsv[:, 2] / 255.0
    coloured = (sat > 0.2) & (val > 0.15)
    hue_i = np.minimum((hue * hue_bins).astype(int), hue_bins - 1)
    sat_i = np.minimum(((sat - 0.2) / 0.8 * sat_bins).clip(0).astype(int), sat_bins - 1)
    val_i = np.minimum((val * val_bins).astype(int), val_bins - 1)
    chroma = np.bincount(hue_i[coloured] * sat_bins + sat_i[coloured], minlength=hue_bins * sat_bins)
    grey = np.bincount(val_i[~coloured], minlength=val_bins)
    histogram = np.concatenate([chroma, grey]).astype(np.float32)
    return histogram / max(1.0, float(histogram.sum()))


def _band(crop: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    height, width = crop.shape[:2]
    y1, y2 = int(band[0] * height), max(int(band[0] * height) + 1, int(band[1] * height))
    x1, x2 = int(SIDE_MARGIN * width), max(int(SIDE_MARGIN * width) + 1, int((1 - SIDE_MARGIN) * width))
    return crop[y1:y2, x1:x2]


class ClothingColourDescriptor:
    """Upper- and lower-body colour histograms of person crops, as one L2-normalised vector.

    The square root of each histogram is used (Hellinger), so the cosine similarity of two descriptors is
    the Bhattacharyya coefficient averaged over the two bands.
    """

    name = "colour"

    def __init__(self, hue_bins: int = 8, sat_bins: int = 4, val_bins: int = 4) -> None:
        self.bins = (hue_bins, sat_bins, val_bins)
        self.dim = 2 * (hue_bins * sat_bins + val_bins)

    def describe(self, crop: np.ndarray) -> dict[str, np.ndarray]:
        """The upper and lower histograms of one crop (each sums to 1), for display and debugging."""
        return {
            "upper": hsv_histogram(_band(crop, UPPER_BAND), *self.bins),
            "lower": hsv_histogram(_band(crop, LOWER_BAND), *self.bins),
        }

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        check_crops(crops, self.name)
        rows = []
        for crop in crops:
            parts = self.describe(crop)
            rows.append(np.concatenate([np.sqrt(parts["upper"]), np.sqrt(parts["lower"])]) / np.sqrt(2.0))
        return l2_normalise(np.array(rows, dtype=np.float32).reshape(len(crops), self.dim))
