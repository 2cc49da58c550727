"""Track lifecycle -> new / throttled update / end, in the Frigate event shape."""

from __future__ import annotations

from typing import Any

import numpy as np

from camd.config import EventsConfig, ObjectsConfig
from camd.events import TrackEvents, TrackState
from camd.publish.frigate import event_payload
from camd.tracks import CameraTracks
from camd.types import Detection, Frame, TrackedObject, TrackEvent

IMAGE = np.zeros((360, 480, 3), dtype=np.uint8)
FRIGATE_KEYS = {"id", "camera", "label", "score", "top_score", "box", "start_time", "end_time", "frame_time",
                "active", "false_positive", "current_zones", "entered_zones", "has_snapshot", "has_clip"}
IDENTITY_KEYS = {"identity", "identity_class", "confidence", "evidence", "global_id"}


def frame(t: float) -> Frame:
    return Frame(camera="door", index=int(t * 10), timestamp=t, image=IMAGE)


def obj(track_id: int, x: float, score: float = 0.8, label: str = "person") -> TrackedObject:
    return TrackedObject(track_id, Detection(label, score, (x, 50.0, x + 40.0, 170.0)))


class Published:
    """One camera's tracks -> events (identity off), each event as it is published on MQTT."""

    def __init__(self, tracks: CameraTracks) -> None:
        self.tracks = tracks

    def update(
        self, tracked: list[TrackedObject], frame: Frame, followed: bool = False
    ) -> list[dict[str, Any]]:
        return _wire(self.tracks.update(tracked, frame, followed))

    def finish(self) -> list[dict[str, Any]]:
        return _wire(self.tracks.finish())

    @property
    def open_tracks(self) -> list[TrackState]:
        return self.tracks.events.open_tracks


def _wire(events: list[TrackEvent]) -> list[dict[str, Any]]:
    return [event_payload(event) for event in events]


def make(update_interval_s: float = 1.0) -> Published:
    return Published(CameraTracks(TrackEvents(
        "door", EventsConfig(update_interval_s=update_interval_s, min_track_frames=2), ObjectsConfig(),
        lost_track_s=1.0)))  # fmt: skip


def test_new_updates_end_in_order_with_the_frigate_shape() -> None:
    events_of = make()
    out = []
    for step in range(30):  # 3 s at 10 frames/s, walking 10 px a frame
        out += events_of.update([obj(7, 10.0 * step)], frame(100.0 + step / 10))
    for step in range(30, 45):  # gone for 1.5 s > lost_track_s
        out += events_of.update([], frame(100.0 + step / 10))
    kinds = [e["type"] for e in out]
    assert kinds[0] == "new" and kinds[-1] == "end"
    assert set(kinds[1:-1]) == {"update"}
    assert 2 <= kinds.count("update") <= 3, "updates are throttled to one per second"
    for event in out:
        assert set(event["after"]) >= FRIGATE_KEYS | IDENTITY_KEYS
        assert set(event["before"]) == set(event["after"])
        assert event["after"]["identity"] is None and event["after"]["evidence"] == {
            "face": None, "body": None, "gait": None}
    assert len({e["after"]["id"] for e in out}) == 1
    assert len({e["message_id"] for e in out}) == len(out)
    end = out[-1]["after"]
    assert end["end_time"] == 102.9 and end["active"] is False and end["start_time"] == 100.0
    assert out[-1]["before"]["box"] != end["box"]


def test_a_flicker_below_min_frames_publishes_nothing() -> None:
    events_of = make()
    out = events_of.update([obj(1, 10.0)], frame(0.0))
    out += events_of.update([], frame(2.0))
    assert out == [] and events_of.open_tracks == []


def test_a_track_only_the_flow_has_seen_is_announced_once_the_detector_sees_it() -> None:
    """ByteTrack confirms a track on its second update, which may be a box the flow carried: that
    track is not announced until the detector itself sees it (one stray detection never is)."""
    events_of = make()
    out = []
    for step in range(8):
        out += events_of.update([obj(1, 10.0 + step)], frame(step / 10), followed=True)
    assert out == [], "a track only the flow carried is never announced"
    assert events_of.open_tracks[0].box[0] == 17.0 and events_of.open_tracks[0].frames == 8
    out += events_of.update([obj(1, 20.0, score=0.7)], frame(0.8))  # the detector sees it: announced
    assert [e["type"] for e in out] == ["new"] and out[0]["after"]["box"][0] == 20.0
    assert out[0]["after"]["top_score"] == 0.7 and out[0]["after"]["label"] == "person"
    out += events_of.update([obj(1, 80.0, score=0.9)], frame(2.0), followed=True)  # moved far: an update
    assert [e["type"] for e in out] == ["new", "update"]
    assert out[-1]["after"]["top_score"] == 0.7, "scores carried by the flow are not evidence"


def test_low_scores_never_announce_the_track() -> None:
    events_of = make()
    out = []
    for step in range(10):
        out += events_of.update([obj(3, 10.0, score=0.3)], frame(step / 10))
    assert out == []
    out += events_of.update([obj(3, 10.0, score=0.7)], frame(1.0))
    assert [e["type"] for e in out] == ["new"]


def test_vehicle_label_is_the_majority_vote() -> None:
    events_of = make()
    labels = ["car", "truck", "car", "car", "truck", "car"]
    for step, label in enumerate(labels):
        events_of.update([obj(4, 10.0, label=label)], frame(step / 10))
    (end,) = events_of.finish()
    assert end["type"] == "end" and end["after"]["label"] == "car"


def test_stationary_track_sends_no_updates() -> None:
    events_of = make(update_interval_s=0.5)
    kinds = []
    for step in range(40):
        kinds += [e["type"] for e in events_of.update([obj(5, 100.0)], frame(step / 10))]
    assert kinds == ["new"]
