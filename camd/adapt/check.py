"""The guardrail: does an adapted network recognise this installation's people better than the one in use?
And the thresholds for it, re-derived from the same tracks. No torch: both networks run as the ONNX files
the daemon would run.

Measured on held-out tracks (never trained on) of the installation's own period:
- self: each held-out track's crops split in two halves (alternate crops); how well a half finds its other
  half among the second halves of all the period's tracks, held out or trained on (a half of another track
  of the same confirmed person counts as found too). Mean average precision, and rank-1.
- cross: where confirmed people (named by a face or by the user) were seen on two cameras, how well a track
  finds that person's tracks on the other cameras among all confirmed tracks there.
The score is the mean of the parts' mAP that could be measured. The adapted network replaces the one in
use only when its score is higher by `margin` and no part got worse by more than `margin`.

Thresholds: the body matcher compares a score with the impostor distribution of its relation (same camera,
cross camera, IR) and mode (raw, centred; body_compare.py). Pairs of held-out tracks known to be different
people give that distribution for the adapted network: fitted directly where there are enough pairs, else
the shipped calibration shifted by how the same pairs moved from the network in use to the adapted one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from camd.adapt.tracks import AdaptTrack, known_different
from camd.identity.body_compare import RELATIONS, BodyCalibration, BodyComparer, CameraCrowds, Mode, Relation

MARGIN = 0.02  # score (mAP) an adapted network must gain to replace the one in use
MIN_FIT = 40  # known-different pairs of one (mode, relation) to fit its impostor tail directly
MIN_SHIFT = 5  # ... to measure how the adapted network moved it
MODES: tuple[Mode, ...] = ("raw", "centred")


@dataclass
class Part:
    queries: int
    map: float
    rank1: float

    def as_dict(self) -> dict[str, float | int]:
        return {"queries": self.queries, "map": round(self.map, 4), "rank1": round(self.rank1, 4)}


@dataclass
class CheckResult:
    parts: dict[str, Part] = field(default_factory=dict)
    tracks: int = 0

    @property
    def score(self) -> float | None:
        return float(np.mean([p.map for p in self.parts.values()])) if self.parts else None

    def as_dict(self) -> dict[str, Any]:
        score = self.score
        return {"tracks": self.tracks, "score": None if score is None else round(score, 4),
                **{name: part.as_dict() for name, part in self.parts.items()}}  # fmt: skip


@dataclass(frozen=True)
class Embedded:
    """Held-out tracks embedded by one network: halves, whole-track means, and greyscale means."""

    halves: tuple[np.ndarray, np.ndarray]  # (n, d) each: each track's even and odd crops' means
    whole: np.ndarray  # (n, d)
    grey: np.ndarray  # (n, d): the track's crops in greyscale (an IR camera)


def embed_tracks(embedder: Any, tracks: Sequence[AdaptTrack]) -> Embedded:
    from camd.identity.evidence.osnet import greyscale

    crops = [c for t in tracks for c in t.crops]
    vectors = embedder.embed(crops)
    greys = embedder.embed([greyscale(c) for c in crops])
    a, b, whole, grey = [], [], [], []
    start = 0
    for track in tracks:
        own = vectors[start : start + len(track.crops)]
        a.append(_mean(own[0::2]))
        b.append(_mean(own[1::2]))
        whole.append(_mean(own))
        grey.append(_mean(greys[start : start + len(track.crops)]))
        start += len(track.crops)
    return Embedded((np.array(a), np.array(b)), np.array(whole), np.array(grey))


def _mean(vectors: np.ndarray) -> np.ndarray:
    """A track mean as camd keeps it: each half (colour, grey) unit length, scaled by 1/sqrt(2)."""
    mean = vectors.mean(axis=0)
    half = mean.size // 2
    parts = [mean[:half], mean[half:]]
    return np.concatenate([p / max(float(np.linalg.norm(p)), 1e-12) for p in parts]) / np.sqrt(2.0)


def check(
    tracks: Sequence[AdaptTrack],
    embedded: Embedded,
    others: Sequence[AdaptTrack] = (),
    others_embedded: Embedded | None = None,
) -> CheckResult:
    """`tracks`: the held-out tracks; `others`: the rest of the period's tracks (the ones trained on),
    whose halves are more places a held-out half may wrongly find itself."""
    result = CheckResult(tracks=len(tracks))
    labels = np.array([t.label for t in tracks])
    usable = np.array([len(t.crops) >= 2 for t in tracks])
    if usable.sum() >= 2:
        index = np.flatnonzero(usable)
        query, gallery = embedded.halves[0][index], embedded.halves[1][index]
        gallery_labels = labels[index]
        if others and others_embedded is not None:
            extra = np.array([len(t.crops) >= 2 for t in others])
            gallery = np.vstack([gallery, others_embedded.halves[1][extra]])
            gallery_labels = np.concatenate([gallery_labels, np.array([t.label for t in others])[extra]])
        relevant = labels[index][:, None] == gallery_labels[None, :]
        result.parts["self"] = _retrieval(query @ gallery.T, relevant)
    people = [i for i, t in enumerate(tracks) if t.person is not None]
    cameras = np.array([t.camera for t in tracks])
    rows, relevant_rows, keep = [], [], []
    for i in people:
        others = [j for j in people if cameras[j] != cameras[i]]
        if not others or not any(labels[j] == labels[i] for j in others):
            continue
        scores = np.full(len(tracks), -np.inf)
        scores[others] = embedded.whole[others] @ embedded.whole[i]
        rows.append(scores)
        relevant_rows.append(np.array([j in others and labels[j] == labels[i] for j in range(len(tracks))]))
        keep.append(i)
    if len(keep) >= 2:
        result.parts["cross"] = _retrieval(np.array(rows), np.array(relevant_rows))
    return result


def _retrieval(scores: np.ndarray, relevant: np.ndarray) -> Part:
    """mAP and rank-1 of each row's ranking (-inf: not in the gallery)."""
    aps, hits = [], []
    for row, rel in zip(scores, relevant, strict=True):
        order = np.argsort(-row)
        order = order[np.isfinite(row[order])]
        found = rel[order]
        if not found.any():
            continue
        ranks = np.flatnonzero(found) + 1
        aps.append(float(np.mean(np.arange(1, ranks.size + 1) / ranks)))
        hits.append(bool(found[0]))
    return Part(len(aps), float(np.mean(aps)) if aps else 0.0, float(np.mean(hits)) if hits else 0.0)


@dataclass(frozen=True)
class Decision:
    replace: bool
    reason: str


def decide(before: CheckResult, after: CheckResult, margin: float = MARGIN) -> Decision:
    b, a = before.score, after.score
    if b is None or a is None:
        return Decision(False, "too few held-out tracks to measure either network (need 2 with 2+ crops)")
    for name, part in before.parts.items():
        new = after.parts.get(name)
        if new is not None and new.map < part.map - margin:
            return Decision(False, f"worse on {name}: mAP {part.map:.3f} -> {new.map:.3f}")
    if a < b + margin:
        return Decision(False, f"not better by the margin: score {b:.3f} -> {a:.3f} (needs +{margin:.2f})")
    return Decision(True, f"better: score {b:.3f} -> {a:.3f}")


# -- thresholds ------------------------------------------------------------------------------------


def impostor_scores(
    tracks: Sequence[AdaptTrack], embedded: Embedded, calibration: BodyCalibration
) -> dict[tuple[Mode, Relation], np.ndarray]:
    """Scores of held-out track pairs known to be different people, per (mode, relation), compared the
    way the matcher compares (body_compare.py); centred on the held-out tracks' own camera means."""
    pairs = [(i, j) for i in range(len(tracks)) for j in range(i + 1, len(tracks))
             if known_different(tracks[i], tracks[j])]  # fmt: skip
    out: dict[tuple[Mode, Relation], list[float]] = {(m, r): [] for m in MODES for r in RELATIONS}
    dim = embedded.whole.shape[1]
    for mode in MODES:
        crowds = CameraCrowds(dim, min_count=1 if mode == "centred" else 10**9, camera_min_count=1)
        for i, track in enumerate(tracks):
            crowds.update(embedded.whole[i].astype(np.float64), track.camera)
        comparer = BodyComparer(calibration, crowds, halves=True)
        for i, j in pairs:
            a, b = tracks[i], tracks[j]
            colour, grey = embedded.whole, embedded.grey
            for left, right in ((colour[i], colour[j]), (grey[i], colour[j])):
                scored = comparer.score(left, a.camera, right, b.camera)
                out[(mode, scored.relation)].append(scored.score)
    return {k: np.array(v) for k, v in out.items()}


def derive_calibration(
    base: BodyCalibration,
    before: dict[tuple[Mode, Relation], np.ndarray],
    after: dict[tuple[Mode, Relation], np.ndarray],
    name: str,
) -> tuple[BodyCalibration | None, dict[str, str]]:
    """The adapted network's calibration, and how each (mode, relation) was had: 'fitted' (its own
    impostor tail), 'shifted' (the base's, moved as the same pairs moved), or None when the installation
    has no pairs of surely different people to measure on."""
    from camd.eval.calibrate import tail_fit

    how: dict[str, str] = {}
    impostor: dict[tuple[Mode, Relation], tuple[float, float]] = {}
    for mode in MODES:
        pooled_before = np.concatenate([before[(mode, r)] for r in RELATIONS])
        pooled_after = np.concatenate([after[(mode, r)] for r in RELATIONS])
        for relation in RELATIONS:
            key = (mode, relation)
            mean, sd = base.impostor[key]
            here_b, here_a = before[key], after[key]
            if here_a.size >= MIN_FIT:
                impostor[key] = tail_fit(here_a)
                how["/".join(key)] = f"fitted on {here_a.size} pairs"
                continue
            source = "pairs"
            if here_a.size < MIN_SHIFT:
                here_b, here_a, source = pooled_before, pooled_after, f"pairs of every {mode} relation"
            if here_a.size < MIN_SHIFT:
                return None, {"/".join(key): f"only {here_a.size} pairs of surely different people"}
            shift = float(here_a.mean() - here_b.mean())
            ratio = float(np.clip(here_a.std() / max(float(here_b.std()), 1e-6), 0.5, 2.0))
            impostor[key] = (round(mean + shift, 4), round(sd * ratio, 4))
            how["/".join(key)] = f"shifted by {shift:+.3f} (sd x{ratio:.2f}) on {here_a.size} {source}"
    day = time.strftime("%Y-%m-%d")
    return replace(base, name=name, impostor=impostor,
                   measured_on=f"this installation's held-out tracks (camd adapt, {day})"), how  # fmt: skip
