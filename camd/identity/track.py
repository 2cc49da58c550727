"""Per-track evidence, gathered frame by frame at a bounded cost.

Every frame: a quality score for the track's box (0.4 ms); for people, MoveNet keypoints (~5-13 ms) every
POSE_INTERVAL_S for the first DENSE_POSE_SAMPLES, then every SPARSE_POSE_INTERVAL_S, up to MAX_POSE_SAMPLES
per track, and at most POSES_PER_FRAME a frame (the neediest tracks first). Only crops that enter the
track's top-K by quality are embedded (body or vehicle appearance, ~5 ms each, at most MAX_EMBEDS per
track), and only those are searched for a face (HOG + embedding ~120 ms when the head region is large
enough, at most MAX_FACE_TRIES per track).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from camd.identity.evidence.gait import PoseSample, gait_signature
from camd.identity.matcher import TrackVectors
from camd.identity.views import PersonCheck, View, dominant_view, person_check, view_prototypes
from camd.types import Box, kind_of

# Embedding budget per track: the top-K crops change often early in a track, rarely later.
MAX_EMBEDS = 15
MAX_FACE_TRIES = 6
ENOUGH_FACES = 3
# Body shape needs a few dozen confident frames, not every frame; cadence at home-camera frame rates was
# noise (docs/identity.md), so pose is sampled sparsely: densely while a track is young (a short visit
# still gets a shape), then rarely (a long one keeps adding views at a third of the cost).
MAX_POSE_SAMPLES = 40
DENSE_POSE_SAMPLES = 12
POSE_INTERVAL_S = 0.4
SPARSE_POSE_INTERVAL_S = 1.2
# At most this many poses a frame, whatever the crowd (`pose_turns` says who goes first). A home scene
# (a few people) never reaches it; in a crowd MoveNet was ~60% of identity's time and slowed the whole
# pipeline (docs/performance.md), while shape is supporting evidence only.
POSES_PER_FRAME = 6
SHAPE_MIN_POSES = 6  # poses before a track has a body shape at all
# Early decisions while a track is open: at most every DECIDE_EVERY_S, backing off (doubling up to
# MAX_DECIDE_EVERY_S) while they change nothing; a new face decides at once.
DECIDE_EVERY_S = 1.0
MAX_DECIDE_EVERY_S = 8.0
# A candidate crop must beat the worst kept crop by this factor to be embedded (no churn on noise).
IMPROVEMENT = 1.15
# People smaller than this (px high) give MoveNet nothing to measure.
MIN_POSE_HEIGHT = 48.0


# (time, box) samples a track keeps of its recent path: enough for its view at each kept crop (views.py).
PATH_SAMPLES = 32


@dataclass
class KeptCrop:
    quality: float
    image: np.ndarray  # BGR copy of the box (kept for the sighting's JPEG)
    box: Box
    timestamp: float
    appearance: np.ndarray | None = None  # body (the body model's) or vehicle (196)
    colour: np.ndarray | None = None
    view: View | None = None  # which way the person faced (views.py)


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
    new_face: bool = False  # a face since the last decision
    last_decision_at: float = 0.0
    decide_every_s: float = DECIDE_EVERY_S
    camera: str = ""
    path: deque[tuple[float, Box]] = field(default_factory=lambda: deque(maxlen=PATH_SAMPLES))

    @classmethod
    def for_label(cls, label: str, best_k: int, camera: str) -> TrackEvidence:
        return cls(kind=kind_of(label), best_k=best_k, camera=camera)

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

    def pose_due(self, now: float) -> bool:
        if len(self.poses) >= MAX_POSE_SAMPLES:
            return False
        if not self.poses:
            return True
        interval = POSE_INTERVAL_S if len(self.poses) < DENSE_POSE_SAMPLES else SPARSE_POSE_INTERVAL_S
        return now - self.poses[-1].timestamp >= interval

    def pose_wanted(self, now: float, box: Box) -> bool:
        return self.kind == "person" and box[3] - box[1] >= MIN_POSE_HEIGHT and self.pose_due(now)

    def decision_due(self, now: float) -> bool:
        if self.new_face:
            return True
        return self.changed and now - self.last_decision_at >= self.decide_every_s

    def decided(self, now: float, changed_identity: bool) -> None:
        """An early decision was made: back off while decisions change nothing."""
        self.changed = self.new_face = False
        self.last_decision_at = now
        self.decide_every_s = (
            DECIDE_EVERY_S if changed_identity else min(MAX_DECIDE_EVERY_S, 2 * self.decide_every_s)
        )

    def best_crop(self) -> KeptCrop | None:
        return self.crops[0] if self.crops else None

    def person_check(self) -> PersonCheck:
        """Whether this track's poses look like a person (views.py)."""
        return person_check([p.keypoints for p in self.poses], [p.box for p in self.poses])

    def view_prototypes(self, most: int = 3) -> list[tuple[np.ndarray, np.ndarray | None, View | None,
                                                            list[KeptCrop]]]:  # fmt: skip
        """Prototypes spread over this track's views (enrollment): (appearance mean, colour mean, view,
        the crops it averages) for each."""
        kept = [c for c in self.crops if c.appearance is not None]
        if not kept:
            return []
        out = []
        for proto in view_prototypes(np.stack([c.appearance for c in kept]), [c.view for c in kept], most):
            crops = [kept[i] for i in proto.crops]
            colours = [c.colour for c in crops if c.colour is not None]
            colour = _unit(np.mean(colours, axis=0)) if colours else None
            out.append((proto.vector, colour, proto.view, crops))
        return out

    def vectors(self, with_shape: bool = True) -> TrackVectors:
        """The track's aggregate: mean of the kept crops' vectors (re-normalised), faces as they are."""
        out = TrackVectors(kind=self.kind, body_crops=len(self.crops), camera=self.camera or None)
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
        if with_shape and len(self.poses) >= SHAPE_MIN_POSES:
            signature = gait_signature(self.poses)
            out.shape = signature if signature.proportions else None
            out.shape_view = dominant_view([c.view for c in self.crops])
        if self.kind == "person":
            out.person = self.person_check()
        return out


def pose_turns(
    candidates: list[tuple[int, TrackEvidence, Box]], now: float, budget: int = POSES_PER_FRAME
) -> set[int]:
    """The track ids that get a pose this frame: of those that want one, the `budget` that most need it.
    A shape needs SHAPE_MIN_POSES samples, so tracks part-way there come first (the closest first), then
    tracks with none yet, then tracks refining a shape they have (the fewest samples first); so that in a
    crowd as many tracks as possible end with a shape, rather than all of them with too few samples."""

    def need(evidence: TrackEvidence) -> tuple[int, int]:
        count = len(evidence.poses)
        if 0 < count < SHAPE_MIN_POSES:
            return (0, -count)
        return (1, 0) if count == 0 else (2, count)

    wanting = sorted((need(e), tid) for tid, e, box in candidates if e.pose_wanted(now, box))
    return {tid for _, tid in wanting[:budget]}


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
