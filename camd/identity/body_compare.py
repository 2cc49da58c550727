"""How two body vectors are compared: per-camera centring, colour or greyscale by the pair's relation, and
the calibrated thresholds of the body model in use (docs/identity.md, "Body appearance without a face").

What was measured on reid/train (two cameras, camera 2 blue-tinted; calibrated on one half of the people,
reported on the other):
- Each camera adds its own bias to every vector (its white balance, light and background). Subtracting
  the camera's mean body vector (learned from its own sightings, no labels) and re-normalising raised
  OSNet's cross-camera true accepts at 1% false accepts from ~0.5 to ~0.8. Until a camera has
  `CAMERA_MIN_COUNT` sightings its vectors are centred on the mean of every camera; until the install has
  `CROWD_MIN_COUNT` sightings nothing is centred ("raw" mode, its own thresholds).
- OSNet vectors hold a colour half and a greyscale half (evidence/osnet.py). Within one camera colour
  separates people best; across cameras the colour cast hurts and greyscale helps, so a cross-camera
  pair uses both halves; a pair where either side is grey (an IR night image: its two halves are equal)
  uses the greyscale half only.
- Scores of a pair on one camera run higher for everybody (shared background and light) than across
  cameras, so each relation has its own threshold.

Every decision compares a score with its relation's threshold, so the matcher works on the excess
(`score - threshold`): above 0 passes, and excesses of different relations rank fairly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal

import numpy as np

Relation = Literal["same", "cross", "ir"]
Mode = Literal["raw", "centred"]
RELATIONS: tuple[Relation, ...] = ("same", "cross", "ir")

CROWD_MIN_COUNT = 50  # sightings (track means) before any vector is centred
CAMERA_MIN_COUNT = 30  # a camera's own sightings before its own mean is used
# A vector whose colour and greyscale halves agree this well came from a grey (IR) image.
IR_HALVES_COSINE = 0.995


@dataclass(frozen=True)
class BodyCalibration:
    """One body model's measurements: per mode and relation, the impostor scores (two different people)
    as a normal distribution (mean, sd; the upper tail is what matters), and the slopes.

    Naming an enrolled person: a stranger is compared with every enrolled person, and any of them may
    pass, so the per-pair false-accept rate allowed is `false_name_rate / enrolled people` (at most
    `max_pair_far`): a household of 4 accepts a looser match than one of 30, for the same risk that a
    stranger is named. P(same) = logistic(excess / slope), 0.5 at that threshold.
    Linking a track to a stranger: the threshold at `false_merge_rate / live strangers' looks` per pair
    (at most `stranger_pair_far`), and the best stranger must beat the runner-up by `stranger_margin` (a
    wrong merge mixes two strangers' histories). The same rule as naming: a new stranger is compared with
    every look in memory, so a busy day of strangers needs a stricter link than a quiet one for the same
    ~1% chance of being merged into someone (measured on reid/train, docs/identity.md "Strangers").
    colour_half: the share of the colour half in a pair's score (the rest: the greyscale half); None for
    a model without halves. clothing_colour: the weight of the clothing colour descriptor.
    """

    name: str
    impostor: dict[tuple[Mode, Relation], tuple[float, float]]
    slope: dict[Mode, float]
    stranger_margin: dict[Mode, float]
    colour_half: dict[Relation, float] | None
    clothing_colour: dict[Relation, float]
    false_name_rate: float = 0.01
    max_pair_far: float = 0.01
    stranger_pair_far: float = 0.002
    false_merge_rate: float | None = 0.01
    measured_on: str = ""

    def threshold(self, mode: Mode, relation: Relation, enrolled: int) -> float:
        far = min(self.max_pair_far, self.false_name_rate / max(1, enrolled))
        return self.score_at(mode, relation, far)

    def stranger_threshold(self, mode: Mode, relation: Relation, looks: int = 1) -> float:
        far = self.stranger_pair_far
        if self.false_merge_rate is not None:
            far = min(far, self.false_merge_rate / max(1, looks))
        return self.score_at(mode, relation, far)

    def score_at(self, mode: Mode, relation: Relation, far: float) -> float:
        """The score that a share `far` of impostor pairs reaches (normal upper tail)."""
        mean, sd = self.impostor[(mode, relation)]
        return mean + sd * _upper_quantile(far)


def _upper_quantile(p: float) -> float:
    """z such that P(Z > z) = p for a standard normal."""
    return NormalDist().inv_cdf(1.0 - p)


@dataclass
class _Mean:
    total: np.ndarray
    count: int = 0

    @property
    def value(self) -> np.ndarray:
        return (self.total / max(1, self.count)).astype(np.float32)


@dataclass
class CameraCrowds:
    """The mean body vector of every camera's sightings and of all of them: what centring subtracts.

    Centring on a mean of a few sightings (mostly one person) would remove that person's own look, hence
    the minimum counts. Kept in the memory (`state`), so a restart does not forget it."""

    dim: int
    min_count: int = CROWD_MIN_COUNT
    camera_min_count: int = CAMERA_MIN_COUNT
    everyone: _Mean = field(init=False)
    cameras: dict[str, _Mean] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.everyone = _Mean(np.zeros(self.dim, np.float64))

    @property
    def count(self) -> int:
        return self.everyone.count

    @property
    def mode(self) -> Mode:
        return "centred" if self.everyone.count >= self.min_count else "raw"

    def update(self, vector: np.ndarray, camera: str | None) -> None:
        if vector.shape != (self.dim,):
            raise ValueError(f"expected a {self.dim}-d body vector, got {vector.shape}")
        self.everyone.total += vector
        self.everyone.count += 1
        if camera is not None:
            mean = self.cameras.setdefault(camera, _Mean(np.zeros(self.dim, np.float64)))
            mean.total += vector
            mean.count += 1

    def mean_for(self, camera: str | None) -> np.ndarray | None:
        """What a vector of this camera is centred on (None: raw mode)."""
        if self.mode == "raw":
            return None
        own = self.cameras.get(camera) if camera is not None else None
        if own is not None and own.count >= self.camera_min_count:
            return own.value
        return self.everyone.value

    def state(self) -> dict[str, object]:
        cameras = {name: {"sum": m.total.tolist(), "count": m.count} for name, m in self.cameras.items()}
        return {"sum": self.everyone.total.tolist(), "count": self.everyone.count, "cameras": cameras}

    @classmethod
    def from_state(cls, state: dict[str, object], dim: int, min_count: int = CROWD_MIN_COUNT) -> CameraCrowds:
        """A saved state; one of another width (another body model's) starts afresh. States saved before
        cameras were kept apart hold only the global mean."""
        crowds = cls(dim, min_count)
        total = np.asarray(state.get("sum", []), dtype=np.float64)
        if total.shape != (dim,):
            return crowds
        crowds.everyone = _Mean(total, int(state.get("count", 0)))  # type: ignore[call-overload]
        for name, saved in dict(state.get("cameras") or {}).items():  # type: ignore[call-overload]
            crowds.cameras[str(name)] = _Mean(np.asarray(saved["sum"], np.float64), int(saved["count"]))
        return crowds


@dataclass(frozen=True, slots=True)
class BodyScore:
    score: float  # the cosine the relation's rule uses
    relation: Relation
    mode: Mode


class BodyComparer:
    """Scores a track's body vector against a stored one, the way every threshold was measured."""

    def __init__(self, calibration: BodyCalibration, crowds: CameraCrowds, halves: bool) -> None:
        self.calibration, self.crowds, self.halves = calibration, crowds, halves
        self.enrolled = 1  # enrolled people a stranger could be taken for (the matcher keeps it current)
        self.stranger_looks = 1  # live strangers' body looks a new stranger could be merged into (ditto)

    def prepare(self, vector: np.ndarray, camera: str | None) -> np.ndarray:
        """The vector centred as its camera's vectors are (each half on its own, then re-normalised)."""
        mean = self.crowds.mean_for(camera)
        centred = vector.astype(np.float32) if mean is None else vector - mean
        return _unit_halves(centred) if self.halves else _unit(centred)

    def relation(self, a: np.ndarray, a_camera: str | None, b: np.ndarray, b_camera: str | None) -> Relation:
        if self.halves and (_is_grey(a) or _is_grey(b)):
            return "ir"
        return "same" if a_camera is not None and a_camera == b_camera else "cross"

    def score(
        self,
        query: np.ndarray,
        query_camera: str | None,
        stored: np.ndarray,
        stored_camera: str | None,
        query_colour: np.ndarray | None = None,
        stored_colour: np.ndarray | None = None,
        prepared_query: np.ndarray | None = None,
    ) -> BodyScore:
        """`query`/`stored` raw as kept; `prepared_query`: `prepare(query, query_camera)` when the caller
        scores one track against many."""
        relation = self.relation(query, query_camera, stored, stored_camera)
        a = self.prepare(query, query_camera) if prepared_query is None else prepared_query
        b = self.prepare(stored, stored_camera)
        if self.halves:
            half = a.size // 2
            share = self.calibration.colour_half[relation]  # type: ignore[index]
            colour, grey = float(a[:half] @ b[:half]), float(a[half:] @ b[half:])
            cosine = 2.0 * (share * colour + (1.0 - share) * grey)  # halves are 1/sqrt(2) long
        else:
            cosine = float(a @ b)
        weight = self.calibration.clothing_colour[relation]
        if weight and query_colour is not None and stored_colour is not None:
            cosine = (1.0 - weight) * cosine + weight * float(_unit(query_colour) @ _unit(stored_colour))
        return BodyScore(cosine, relation, self.crowds.mode)

    def excess(self, scored: BodyScore) -> float:
        """How far above the naming threshold (negative: below)."""
        return scored.score - self.calibration.threshold(scored.mode, scored.relation, self.enrolled)

    def stranger_excess(self, scored: BodyScore) -> float:
        threshold = self.calibration.stranger_threshold(scored.mode, scored.relation, self.stranger_looks)
        return scored.score - threshold

    def probability(self, excess: float) -> float:
        """P(same person) from the body alone: 0.5 at the threshold."""
        slope = self.calibration.slope[self.crowds.mode]
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, excess / slope))))

    @property
    def stranger_margin(self) -> float:
        return self.calibration.stranger_margin[self.crowds.mode]


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _unit_halves(v: np.ndarray) -> np.ndarray:
    half = v.size // 2
    return np.concatenate([_unit(v[:half]), _unit(v[half:])]) * np.float32(1.0 / math.sqrt(2.0))


def _is_grey(v: np.ndarray) -> bool:
    half = v.size // 2
    a, b = v[:half], v[half:]
    return float(a @ b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12) >= IR_HALVES_COSINE
