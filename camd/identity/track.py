"""Per-track evidence, gathered frame by frame at a bounded cost.

Every frame: a quality score for the track's box (0.4 ms); for people, MoveNet keypoints (~5-13 ms) every
POSE_INTERVAL_S, up to MAX_POSE_SAMPLES per track. Only crops that enter the track's top-K by quality are
embedded (body or vehicle appearance, ~5 ms each, at most MAX_EMBEDS per track), and only those are
searched for a face
(HOG + embedding ~120 ms when the head region is large enough, at most MAX_FACE_TRIES per track).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from camd.identity.evidence.gait import PoseSample, gait_signature
from camd.identity.matcher import TrackVectors
from camd.types import PERSON, Box

# Embedding budget per track: the top-K crops change often early in a track, rarely later.
MAX_EMBEDS = 15
MAX_FACE_TRIES = 6
ENOUGH_FACES = 3
# Body shape needs a few dozen confident frames, not every frame; cadence at home-camera frame rates was
# noise (docs/identity.md), so pose is sampled sparsely: this bounds its cost to ~2 runs per second.
MAX_POSE_SAMPLES = 40
POSE_INTERVAL_S = 0.4
# A candidate crop must beat the worst kept crop by this factor to be embedded (no churn on noise).
IMPROVEMENT = 1.15
# People smaller than this (px high) give MoveNet nothing to measure.
MIN_POSE_HEIGHT = 48.0


@dataclass
class KeptCrop:
    quality: float
    image: np.ndarray  # BGR copy of the box (kept for the sighting's JPEG)
    box: Box
    timestamp: float
    appearance: np.ndarray | None = None  # body (1280) or vehicle (196)
    colour: np.ndarray | None = None


@dataclass
class TrackEvidence:
    kind: str  # "person" | "vehicle"
    best_k: int
    crops: list[KeptCrop] = field(default_factory=list)
    faces: list[np.ndarray] = field(default_factory=list)
    face_tries: int = 0
    embeds: int = 0
    poses: list[PoseSample] = field(default_factory=list)
    frames: int = 0
    changed: bool = False  # new evidence since the last decision
    last_decision_at: float = 0.0
    camera: str = ""

    @classmethod
    def for_label(cls, label: str, best_k: int, camera: str) -> TrackEvidence:
        return cls(kind="person" if label == PERSON else "vehicle", best_k=best_k, camera=camera)

    def wants(self, quality: float) -> bool:
        """Whether a crop of this quality is worth embedding now."""
        if self.embeds >= MAX_EMBEDS or quality <= 0.0:
            return False
        if len(self.crops) < self.best_k:
            return True
        return quality > IMPROVEMENT * min(c.quality for c in self.crops)

    def keep(self, crop: KeptCrop) -> None:
        self.crops.append(crop)
        self.crops.sort(key=lambda c: -c.quality)
        del self.crops[self.best_k :]
        self.embeds += 1
        self.changed = True

    def best_crop(self) -> KeptCrop | None:
        return self.crops[0] if self.crops else None

    def vectors(self, with_shape: bool = True) -> TrackVectors:
        """The track's aggregate: mean of the kept crops' vectors (re-normalised), faces as they are."""
        out = TrackVectors(kind=self.kind, body_crops=len(self.crops))
        appearance = [c.appearance for c in self.crops if c.appearance is not None]
        if appearance:
            mean = np.mean(appearance, axis=0)
            mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
            if self.kind == "person":
                out.body = mean.astype(np.float32)
            else:
                out.vehicle = mean.astype(np.float32)
        colours = [c.colour for c in self.crops if c.colour is not None]
        if colours:
            mean = np.mean(colours, axis=0)
            out.colour = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
        if self.faces:
            out.faces = np.stack(self.faces).astype(np.float32)
        if with_shape and len(self.poses) >= 6:
            signature = gait_signature(self.poses)
            out.shape = signature if signature.proportions else None
        return out
