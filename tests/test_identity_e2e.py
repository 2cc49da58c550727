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
import numpy as np
import pytest

from camd.config.schema import Config, EventsConfig, ObjectsConfig
from camd.daemon import Daemon
from camd.events import TrackEvents
from camd.identity import enroll
from camd.identity.model_files import face_photo
from camd.identity.service import IdentityService
from camd.publish.frigate import event_payload
from camd.tracks import CameraTracks
from camd.types import Detection, Frame, TrackedObject, TrackEvent
from tests.support.data import shared_data
from tests.support.identity_data import identity_config, read_image
from tests.support.media import clip_span

pytest_plugins = ["tests.support.identity"]

SPLIT_S = 4.5


@pytest.mark.shared_data
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
        assert result["added"]["face"] >= 1 and 1 <= result["added"]["body"] <= 3  # one per view and look
    finally:
        service.close()

    events: list[dict[str, Any]] = []
    camera = {"url": str(clip_span(clip, tmp_path / "later.mp4", start_s=SPLIT_S)), "detect_fps": 5}
    daemon_config = Config.model_validate({**config.model_dump(mode="json"), "cameras": {"stage": camera}})
    summary = Daemon(daemon_config, extra_sinks=[lambda event: events.append(event_payload(event))],
                     mqtt=False).run(install_signals=False)

    ends = [e["after"] for e in events if e["type"] == "end" and e["after"]["label"] == "person"]
    assert summary.tracks >= 2 and ends
    lin = [a for a in ends if a["identity"] == "lin"]
    others = [a for a in ends if a["identity"] is None]
    assert lin, [(a["track_id"], a["frames"], a["identity_class"], a["evidence"]) for a in ends]
    assert all(a["identity_class"] == "family" and a["global_id"] == "lin" for a in lin)
    # Measured 0.72: his face is ~0.47 from the enrolled ones under stage light (threshold 0.55) and his
    # body ~0.60 raw (threshold 0.70, so it counts against, capped): recognised, but not confidently. The
    # others are clearly strangers. The replay is exact (camd/pipeline.py), so these figures are the same
    # on every run; before it, a run whose gate picked other frames saw his face at 0.53 and missed him.
    assert max(a["confidence"] for a in lin) > 0.5
    seen = [(a["frames"], a["box"], a["evidence"]) for a in others]
    assert others and all(a["identity_class"] == "stranger" for a in others), seen
    assert all(str(a["global_id"]).startswith("unknown-") for a in others)
    # Every finished track is a sighting; the stranger ids are stable ids in the memory.
    check = IdentityService(daemon_config, load_extractors=False)
    try:
        assert check.memory.count_sightings() == summary.tracks
        assert {p["person_id"] for p in check.memory.people(include_strangers=True)} >= {"lin"}
    finally:
        check.close()


def test_a_confident_identity_is_published_before_the_track_ends(
    models_dir: Path, service_factory: Any
) -> None:
    """The pipeline's identity step on real frames: a track showing an enrolled face gets an immediate
    `update` carrying the name, before its `end`; the `end` carries the final decision."""
    service = service_factory()
    enroll.enroll_photos(service, "obama", "family", face_photo(models_dir, "obama.jpg"))
    photo = read_image(face_photo(models_dir, "obama2.jpg"))
    # The photo is a portrait: put it at the top of a taller frame so that the face sits in the head
    # region of a standing person's box, as it does on a camera.
    fx1, fy1, fx2, _ = service.extractors.face.faces(photo)[0].box  # type: ignore[union-attr]
    size = fx2 - fx1
    image = np.zeros((photo.shape[0] * 3, photo.shape[1], 3), np.uint8)
    image[: photo.shape[0]] = photo
    detector_box = (max(0.0, fx1 - 0.6 * size), max(0.0, fy1 - 0.4 * size),
                    min(photo.shape[1] - 1.0, fx2 + 0.6 * size), fy1 + 5.5 * size)  # fmt: skip
    camera = service.camera("hall")
    tracks = CameraTracks(TrackEvents("hall", EventsConfig(), ObjectsConfig(), lost_track_s=2.0), camera)
    published: list[TrackEvent] = []
    turned_away = image.copy()
    turned_away[: int(fy1 + 1.2 * size)] = 0  # no face in the first frames: the person has their back to us
    for index in range(6):  # 2 frames/s; decisions are due at most once a second
        frame = Frame("hall", index, 1000.0 + index * 0.5, turned_away if index < 2 else image)
        tracked = [TrackedObject(7, Detection("person", 0.9, detector_box))]
        published += tracks.update(tracked, frame)
        published += tracks.identify(frame, tracked)
    published += tracks.finish()
    events = [event_payload(event) for event in published]

    kinds = [(e["type"], e["after"]["identity"]) for e in events]
    assert kinds[0] == ("new", None)
    first_named = next(i for i, (_, name) in enumerate(kinds) if name == "obama")
    assert kinds[first_named][0] == "update" and first_named < len(kinds) - 1
    end = events[-1]["after"]
    assert events[-1]["type"] == "end" and end["identity"] == "obama" and end["identity_class"] == "family"
    assert end["evidence"]["face"] > 0.9 and end["global_id"] == "obama"
    assert service.memory.sighting(end["id"]).payload["identity"] == "obama"




def test_a_crowd_gets_at_most_the_pose_budget_each_frame_and_every_person_a_turn(
    models_dir: Path, service_factory: Any
) -> None:
    """Ten people cut from bus.jpg side by side: MoveNet runs on at most POSES_PER_FRAME of them a frame,
    and the ones left out go first on the next frame."""
    from camd.identity.track import POSES_PER_FRAME

    service = service_factory(face=False)
    person = cv2.imread(str(models_dir / "sample_photos" / "bus.jpg"))[400:898, 52:243]  # one full-length
    image = np.zeros((person.shape[0] + 20, 10 * person.shape[1], 3), np.uint8)
    boxes = []
    for slot in range(10):
        x = slot * person.shape[1]
        image[10 : 10 + person.shape[0], x : x + person.shape[1]] = person
        boxes.append((float(x), 10.0, float(x + person.shape[1]), 10.0 + person.shape[0]))
    camera = service.camera("crowd")
    tracks = CameraTracks(TrackEvents("crowd", EventsConfig(), ObjectsConfig(), lost_track_s=2.0), camera)
    posed_per_frame = []
    for index in range(4):  # 4 frames/s: each person's next pose is due 0.4 s (2 frames) after the last
        frame = Frame("crowd", index, 1000.0 + index * 0.25, image)
        tracked = [TrackedObject(tid, Detection("person", 0.9, box)) for tid, box in enumerate(boxes)]
        tracks.update(tracked, frame)
        before = {tid: len(e.poses) for tid, e in camera.tracks.items()}
        tracks.identify(frame, tracked)
        posed = {tid for tid, e in camera.tracks.items() if len(e.poses) > before.get(tid, 0)}
        posed_per_frame.append(posed)
    assert [len(p) for p in posed_per_frame] == [POSES_PER_FRAME, 10 - POSES_PER_FRAME, POSES_PER_FRAME, 4]
    assert posed_per_frame[0] | posed_per_frame[1] == set(range(10)), "everyone had a turn in two frames"
    keypoints = camera.tracks[0].poses[0].keypoints
    assert (keypoints[:, 2] > 0.3).sum() >= 10, "real keypoints on a real person"
