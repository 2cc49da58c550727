"""Vehicle appearance: the same MobileNetV2 block as people, pooled globally, plus a colour histogram.

A car's colour is its strongest cheap cue; the backbone adds shape (hatchback vs van) and markings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from camd.identity.evidence._crops import check_crops, l2_normalise
from camd.identity.evidence.body import MobileNetV2Features, stripe_pool
from camd.identity.evidence.colour import hsv_histogram


class VehicleAppearanceEmbedder:
    """L2-normalised vehicle descriptor: backbone bands and colour, weighted so the cosine similarity is
    (1 - colour_weight) * appearance cosine + colour_weight * colour Bhattacharyya coefficient."""

    name = "vehicle-mobilenetv2-colour"

    def __init__(
        self, onnx_path: str | Path, threads: int = 2, stripes: int = 1, colour_weight: float = 0.3
    ) -> None:
        if not 0.0 <= colour_weight <= 1.0:
            raise ValueError(f"colour_weight must be within 0..1, got {colour_weight}")
        self.features = MobileNetV2Features(onnx_path, threads=threads)
        output = self.features._session.get_outputs()[0].shape
        self.stripes, self.colour_weight = stripes, colour_weight
        self._colour_dim = 8 * 4 + 4
        self.dim = int(output[1]) * stripes + self._colour_dim

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        check_crops(crops, self.name)
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        appearance = stripe_pool(self.features(crops), self.stripes)
        colour = l2_normalise(np.array([np.sqrt(hsv_histogram(c)) for c in crops], dtype=np.float32))
        return np.concatenate(
            [appearance * np.sqrt(1 - self.colour_weight), colour * np.sqrt(self.colour_weight)], axis=1
        ).astype(np.float32)
