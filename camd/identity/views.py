"""What a pose says beyond the body shape: which way the person faces, and whether it is a person at all.

Orientation comes first from how the person moves (people walk forwards): across the picture is a side
view, growing (coming closer) a front view, shrinking a back view. Measured on vtest and
supervision_walking (tests/test_views.py), MoveNet's left/right keypoints at 40-100 px mostly say "front"
whatever the walker does, so they decide only for someone standing still, from MoveNet's 17 keypoints
(COCO order, anatomical left/right):
- a person facing the camera shows their left shoulder on the image's right (and their face);
- a person seen from behind shows it on the image's left (and no eyes or nose);
- seen from the side, the two shoulders nearly overlap: their horizontal gap is small against the
  torso's length.
Body appearance and shape change with the view, so enrollment keeps one prototype per view it saw, and
body shape is compared only between like views (docs/identity.md, "Views").

Person-likeness: MoveNet always answers with 17 keypoints, but on foliage, a sign or a shadow their
confidence stays low. A track whose poses show a body (enough confident keypoints, head to hips) on too
few of its frames is not given an enrolled name (issue: a false detection named as family).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from camd.identity.evidence.pose import CONFIDENT, INDEX
from camd.types import Box

View = Literal["front", "back", "side"]
VIEWS: tuple[View, ...] = ("front", "back", "side")

# Shoulders closer than this share of the torso length (shoulder centre to hip centre) overlap: a side
# view. Frontal adult shoulders measure ~0.6-0.9 torso lengths apart.
SIDE_SHOULDER_RATIO = 0.3
FACE = ("nose", "left_eye", "right_eye")
# A frame shows a body when at least this many keypoints are confident, among them a torso (both
# shoulders or both hips) or a head on a shoulder (nose, an eye, a shoulder: a close-up, seated or turned).
BODY_KEYPOINTS = 5
# A track is judged by its poses once it has MIN_POSES_TO_JUDGE of them; it does not look like a person
# when fewer than PERSON_SHARE of them show a body. Measured on real tracks (tests/test_views.py,
# 10 poses a track): walkers on vtest and supervision_walking 0.3-1.0 (most 1.0), Hamilton's stage
# close-ups 0.22-0.67, supervision_walking's whole-frame false box 0.1. MoveNet finds "bodies" in small
# non-person boxes too (vtest's no-parking sign, 20x45 px: 0.4-0.6), so this gate stops only what is
# plainly not a person; small false boxes need the detector's own score.
PERSON_SHARE = 0.2
MIN_POSES_TO_JUDGE = 3


def _ok(keypoints: np.ndarray, name: str) -> bool:
    return bool(keypoints[INDEX[name], 2] >= CONFIDENT)


def _xy(keypoints: np.ndarray, name: str) -> np.ndarray:
    return keypoints[INDEX[name], :2].astype(np.float64)


def orientation(keypoints: np.ndarray) -> View | None:
    """Which way one frame's person faces, or None when the shoulders and hips are not confident."""
    if not (_ok(keypoints, "left_shoulder") and _ok(keypoints, "right_shoulder")):
        return None
    left, right = _xy(keypoints, "left_shoulder"), _xy(keypoints, "right_shoulder")
    shoulders = (left + right) / 2.0
    if _ok(keypoints, "left_hip") and _ok(keypoints, "right_hip"):
        hips = (_xy(keypoints, "left_hip") + _xy(keypoints, "right_hip")) / 2.0
        torso = float(np.linalg.norm(hips - shoulders))
    else:
        return None
    if torso <= 1.0:
        return None
    gap = float(left[0] - right[0])  # > 0: the left shoulder on the image's right
    if abs(gap) < SIDE_SHOULDER_RATIO * torso:
        return "side"
    face = sum(_ok(keypoints, name) for name in FACE)
    if gap > 0:
        return "front" if face >= 1 else "back"  # a facing pose without any face point: unsure, from behind
    return "back" if face < 2 else "front"  # mirrored shoulders with a clear face: MoveNet swapped sides


# Walking speed is ~0.8 body heights a second: a box moving sideways at 0.25 heights/s or more is someone
# walking across; its height changing by 12 %/s or more is someone coming closer or going away.
ACROSS_HEIGHTS_PER_S = 0.25
DEPTH_PER_S = 0.12


def view_from_motion(before: tuple[float, Box], after: tuple[float, Box]) -> View | None:
    """The view of a walker between two (time, box) samples of a track, or None when they stand still."""
    (t0, a), (t1, b) = before, after
    dt = t1 - t0
    ha, hb = a[3] - a[1], b[3] - b[1]
    if dt <= 0 or ha <= 1 or hb <= 1:
        return None
    height = (ha + hb) / 2.0
    across = abs((b[0] + b[2]) - (a[0] + a[2])) / 2.0 / height / dt
    depth = float(np.log(hb / ha)) / dt
    if across >= ACROSS_HEIGHTS_PER_S and across >= 2.0 * abs(depth):
        return "side"
    if depth >= DEPTH_PER_S:
        return "front"
    if depth <= -DEPTH_PER_S:
        return "back"
    return "side" if across >= ACROSS_HEIGHTS_PER_S else None


def view_at(t: float, path: Sequence[tuple[float, Box]], keypoints: np.ndarray | None = None,
            window_s: float = 0.6) -> View | None:  # fmt: skip
    """A track's view at time t: from its motion over +-window_s around t (path: (time, box) in time
    order), else from the pose when given."""
    before = [p for p in path if t - window_s <= p[0] <= t]
    after = [p for p in path if t <= p[0] <= t + window_s]
    if before and after and after[-1][0] - before[0][0] >= window_s / 2:
        moving = view_from_motion(before[0], after[-1])
        if moving is not None:
            return moving
    return orientation(keypoints) if keypoints is not None else None


def shows_body(keypoints: np.ndarray) -> bool:
    """One frame's keypoints look like a human body."""
    confident = int(np.sum(keypoints[:, 2] >= CONFIDENT))
    shoulder = _ok(keypoints, "left_shoulder") or _ok(keypoints, "right_shoulder")
    torso = (_ok(keypoints, "left_shoulder") and _ok(keypoints, "right_shoulder")) or (
        _ok(keypoints, "left_hip") and _ok(keypoints, "right_hip")
    )
    head = _ok(keypoints, "nose") and (_ok(keypoints, "left_eye") or _ok(keypoints, "right_eye")) and shoulder
    return confident >= BODY_KEYPOINTS and (torso or head)


@dataclass(frozen=True, slots=True)
class PersonCheck:
    """Whether a track's poses look like a person: `share` of its poses show a body (None: no poses)."""

    poses: int
    with_body: int

    @property
    def share(self) -> float | None:
        return self.with_body / self.poses if self.poses else None

    @property
    def looks_like_a_person(self) -> bool | None:
        """True/False when there were enough poses to judge by; None when not (too few, too small a box)."""
        if self.poses < MIN_POSES_TO_JUDGE:
            return None
        return self.with_body >= PERSON_SHARE * self.poses

    def reason(self) -> str:
        return (f"does not look like a person: {self.with_body} of {self.poses} poses show a body "
                f"(at least {PERSON_SHARE:.0%} needed before a name is given)")  # fmt: skip


def person_check(poses: Sequence[np.ndarray]) -> PersonCheck:
    return PersonCheck(len(poses), sum(shows_body(k) for k in poses))


def dominant_view(views: Sequence[View | None]) -> View | None:
    """The view most of a track's frames show (None: none says)."""
    counted = Counter(v for v in views if v is not None)
    return counted.most_common(1)[0][0] if counted else None


@dataclass(frozen=True)
class ViewPrototype:
    """One of a track's prototypes: the mean of a group of its crops that look alike, and their view."""

    vector: np.ndarray
    view: View | None
    crops: tuple[int, ...]  # indices of the crops it averages


def view_prototypes(vectors: np.ndarray, views: Sequence[View | None], most: int = 3,
                    min_crops: int = 2) -> list[ViewPrototype]:  # fmt: skip
    """Up to `most` prototypes spread over a track's looks: its crops grouped by view when the views
    are known, and each group's crops that still differ split by appearance (a 2-means in embedding
    space). Someone enrolled walking towards the camera keeps a front prototype; the same clip's turn
    at the end gives a side or back one. A group needs `min_crops` crops (one crop is too noisy)."""
    groups: dict[View | None, list[int]] = {}
    for index, view in enumerate(views):
        groups.setdefault(view, []).append(index)
    # An unknown view joins the largest known group, unless nothing is known.
    if None in groups and len(groups) > 1:
        unknown = groups.pop(None)
        largest = max(groups, key=lambda v: len(groups[v]))
        groups[largest] += unknown
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    kept = [(view, members) for view, members in ordered if len(members) >= min_crops]
    if not kept:
        return [ViewPrototype(_unit(vectors.mean(axis=0)), ordered[0][0], tuple(range(len(vectors))))]
    out = [ViewPrototype(_unit(vectors[m].mean(axis=0)), view, tuple(m)) for view, m in kept[:most]]
    if len(out) < most and len(kept) == 1 and len(kept[0][1]) >= 2 * min_crops:
        # One view only: two looks of it when the crops differ (turning, an arm raised, a bag shown).
        halves = _two_means(vectors[kept[0][1]])
        if halves is not None:
            members = np.array(kept[0][1])
            out = [ViewPrototype(_unit(vectors[members[h]].mean(axis=0)), kept[0][0], tuple(members[h]))
                   for h in halves if len(h) >= min_crops]  # fmt: skip
    return out


# Two looks of one view are kept apart only when their means differ this much (cosine below it).
DISTINCT_LOOKS = 0.9


def _two_means(vectors: np.ndarray, rounds: int = 10) -> list[np.ndarray] | None:
    """Split crops in two groups by appearance, or None when they all look alike."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    a, b = np.unravel_index(np.argmin(similarity), similarity.shape)
    centres = unit[[a, b]]
    for _ in range(rounds):
        nearest = np.argmax(unit @ centres.T, axis=1)
        if nearest.min() == nearest.max():
            return None
        centres = np.stack([_unit(unit[nearest == k].mean(axis=0)) for k in (0, 1)])
    if float(centres[0] @ centres[1]) >= DISTINCT_LOOKS:
        return None
    return [np.flatnonzero(nearest == k) for k in (0, 1)]


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
