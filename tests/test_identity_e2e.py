"""End to end on real footage: enroll a person from one part of a clip, run the daemon on another part.

The clip is face_recognition's short Hamilton stage clip (../shared/data/faces/examples): Lin-Manuel
Miranda in the foreground for most of it, other performers around him. He is enrolled from the first
4 seconds (the track the CLI would list with the most faces), and the daemon then plays the clip from
4.5 s on, as a camera would, through detection, tracking, per-track evidence, the matcher and events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import pytest

from camd.config.models import Config
from camd.daemon import Daemon
from camd.identity import enroll
from camd.identity.service import IdentityService
from tests.support.data import shared_data
from tests.support.identity_data import identity_config

pytestmark = pytest.mark.shared_data

SPLIT_S = 4.5


def _tail(clip: Path, start_s: float, out: Path) -> Path:
    """Frames of `clip` from start_s on, re-encoded to `out` (a test-local file, never committed)."""
    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index / fps >= start_s:
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            writer.write(frame)
        index += 1
    capture.release()
    assert writer is not None, "clip shorter than the split"
    writer.release()
    return out


def test_a_person_enrolled_from_one_part_is_recognised_in_another(tmp_path: Path, models_dir: Path) -> None:
    clip = shared_data("faces/examples/short_hamilton_clip.mp4")
    config = identity_config(tmp_path / "state", models_dir)
    service = IdentityService(config)
    try:
        try:
            result = enroll.enroll_clip(service, "lin", "family", clip, end_s=SPLIT_S - 0.5)
        except enroll.TrackChoiceNeeded as choice:
            best = max(choice.tracks, key=lambda row: (row["faces"], row["frames"]))
            result = enroll.enroll_clip(
                service, "lin", "family", clip, track=best["track"], end_s=SPLIT_S - 0.5
            )
        assert result["added"]["face"] >= 1 and result["added"]["body"] == 1
    finally:
        service.close()

    events: list[dict[str, Any]] = []
    camera = {"url": str(_tail(clip, SPLIT_S, tmp_path / "later.mp4")), "detect_fps": 5}
    daemon_config = Config.model_validate({**config.model_dump(mode="json"), "cameras": {"stage": camera}})
    summary = Daemon(daemon_config, extra_sinks=[events.append], mqtt=False).run(install_signals=False)

    ends = [e["after"] for e in events if e["type"] == "end" and e["after"]["label"] == "person"]
    assert summary.tracks >= 2 and ends
    lin = [a for a in ends if a["identity"] == "lin"]
    others = [a for a in ends if a["identity"] is None]
    assert lin, [(a["track_id"], a["frames"], a["identity_class"], a["evidence"]) for a in ends]
    assert all(a["identity_class"] == "family" and a["global_id"] == "lin" for a in lin)
    assert max(a["confidence"] for a in lin) > 0.6  # measured 0.71: face distance ~0.51 on stage light
    assert others and all(a["identity_class"] == "stranger" for a in others)
    assert all(str(a["global_id"]).startswith("unknown-") for a in others)
    # The decision reached the events before the track ended (an immediate update).
    lin_ids = {a["id"] for a in lin}
    early = [e for e in events if e["type"] in ("new", "update") and e["after"]["id"] in lin_ids]
    assert any(e["after"]["identity"] == "lin" for e in early)
    # Every finished track is a sighting; the stranger ids are stable ids in the memory.
    check = IdentityService(daemon_config)
    try:
        assert check.memory.count_sightings() == summary.tracks
        assert {p["person_id"] for p in check.memory.people(include_strangers=True)} >= {"lin"}
    finally:
        check.close()
