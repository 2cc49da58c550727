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
    POSE_INTERVAL_S,
    SPARSE_POSE_INTERVAL_S,
    TrackEvidence,
)


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
