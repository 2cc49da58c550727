"""The per-track budget of pose runs and early decisions (camd/identity/track.py)."""

from __future__ import annotations

import numpy as np
import pytest

from camd.identity.evidence.gait import PoseSample
from camd.identity.track import (
    DECIDE_EVERY_S,
    DENSE_POSE_SAMPLES,
    MAX_DECIDE_EVERY_S,
    MAX_POSE_SAMPLES,
    MIN_POSE_HEIGHT,
    POSE_INTERVAL_S,
    SHAPE_MIN_POSES,
    SPARSE_POSE_INTERVAL_S,
    TrackEvidence,
    pose_turns,
)

TALL = (0.0, 0.0, 40.0, 120.0)


def _posed(evidence: TrackEvidence, count: int, at: float = 0.0) -> TrackEvidence:
    for _ in range(count):
        evidence.poses.append(PoseSample(at, TALL, np.zeros((17, 3), np.float32)))
    return evidence


def test_pose_is_sampled_densely_while_young_then_sparsely_then_not_at_all() -> None:
    evidence = TrackEvidence(kind="person", best_k=5)
    taken = []
    for step in range(2000):  # 200 s of a track at 10 frames/s
        now = step / 10
        if evidence.pose_due(now):
            evidence.poses.append(PoseSample(now, (0.0, 0.0, 10.0, 30.0), np.zeros((17, 3), np.float32)))
            taken.append(now)
    gaps = np.diff(taken)
    dense = gaps[: DENSE_POSE_SAMPLES - 1]
    np.testing.assert_allclose(dense, POSE_INTERVAL_S, atol=0.11)
    np.testing.assert_allclose(gaps[DENSE_POSE_SAMPLES:], SPARSE_POSE_INTERVAL_S, atol=0.11)
    assert len(taken) == MAX_POSE_SAMPLES


def test_early_decisions_back_off_while_they_change_nothing_and_a_face_decides_at_once() -> None:
    evidence = TrackEvidence(kind="person", best_k=5)
    decided_at = []
    for step in range(400):  # new crops on every frame for 40 s, no decision changes anything
        now = step / 10
        evidence.changed = True
        if evidence.decision_due(now):
            evidence.decided(now, changed_identity=False)
            decided_at.append(now)
    gaps = np.diff(decided_at)
    assert decided_at[0] == DECIDE_EVERY_S and gaps[0] == pytest.approx(2 * DECIDE_EVERY_S)
    assert max(gaps) == pytest.approx(MAX_DECIDE_EVERY_S)
    assert (np.diff(gaps) >= -1e-9).all(), "the interval only grows"
    assert len(decided_at) <= 10  # against 40 at a fixed 1 s

    now = decided_at[-1] + 0.1
    assert not evidence.decision_due(now)
    evidence.new_face = evidence.changed = True
    assert evidence.decision_due(now), "a new face does not wait for the back-off"
    evidence.decided(now, changed_identity=True)
    assert evidence.decide_every_s == DECIDE_EVERY_S, "a decision that changed the identity resets it"


def test_pose_turns_finish_shapes_first_then_start_new_ones_and_skip_what_cannot_be_posed() -> None:
    now = 100.0
    tracks = {
        1: _posed(TrackEvidence(kind="person", best_k=5), 0),
        2: _posed(TrackEvidence(kind="person", best_k=5), 3),
        3: _posed(TrackEvidence(kind="person", best_k=5), SHAPE_MIN_POSES - 1),
        4: _posed(TrackEvidence(kind="person", best_k=5), SHAPE_MIN_POSES + 2),
        5: TrackEvidence(kind="vehicle", best_k=5),
    }
    small = (0.0, 0.0, 10.0, MIN_POSE_HEIGHT - 1)
    candidates = [(tid, e, TALL) for tid, e in tracks.items()] + [(6, TrackEvidence("person", 5), small)]
    assert pose_turns(candidates, now, budget=1) == {3}, "the track closest to a shape first"
    assert pose_turns(candidates, now, budget=2) == {3, 2}
    assert pose_turns(candidates, now, budget=3) == {3, 2, 1}, "then a track with no pose yet"
    assert pose_turns(candidates, now, budget=10) == {1, 2, 3, 4}, "never a vehicle or a tiny person"
    assert pose_turns(candidates, 0.1, budget=10) == {1}, "the others' next pose is not due yet"


def test_in_a_crowd_beyond_the_budget_many_tracks_still_end_with_a_shape() -> None:
    """30 people in view for 6 s at 5 detections/s with 2 poses a frame: spreading the poses evenly
    would leave everyone with 2 (no shape); finishing shapes first gives a third of them one."""
    budget, crowd = 2, {tid: TrackEvidence(kind="person", best_k=5) for tid in range(30)}
    for step in range(30):
        now = step / 5
        turns = pose_turns([(tid, e, TALL) for tid, e in crowd.items()], now, budget)
        assert len(turns) <= budget
        for tid in turns:
            crowd[tid].poses.append(PoseSample(now, TALL, np.zeros((17, 3), np.float32)))
    counts = sorted(len(e.poses) for e in crowd.values())
    assert sum(counts) == budget * 30
    assert sum(c >= SHAPE_MIN_POSES for c in counts) >= 8, counts
