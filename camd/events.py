"""Track lifecycle -> Frigate-shaped events: `new`, throttled `update`s, `end`.

The payload has the shape of Frigate's `frigate/events` ({type, before, after}) so Frigate
blueprints carry over, plus camd's identity fields (null until identity decides) and a
`message_id` so a consumer can tell a redelivered message from a new one.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from camd.config import EventsConfig, ObjectsConfig
from camd.types import Box, EventType, Frame, Identity, TrackedObject

# A box that moved by more than this fraction of the frame's diagonal counts as a change.
MOVE_FRACTION = 0.05


@dataclass
class TrackState:
    """What camd knows about one track of one camera, updated every frame it is seen."""

    event_id: str
    camera: str
    track_id: int
    start_time: float
    labels: Counter[str] = field(default_factory=Counter)
    score: float = 0.0
    top_score: float = 0.0
    box: Box = (0.0, 0.0, 0.0, 0.0)
    frame_size: tuple[int, int] = (0, 0)
    last_seen: float = 0.0
    frames: int = 0
    end_time: float | None = None
    announced: bool = False
    last_sent: float = 0.0
    last_sent_snapshot: tuple[str, float, Box, str | None] | None = None
    identity: Identity = field(default_factory=Identity)

    @property
    def label(self) -> str:
        """The most frequent label: SSD flips car/truck on one vehicle, a vote steadies it."""
        return self.labels.most_common(1)[0][0]

    def snapshot(self) -> dict[str, Any]:
        x1, y1, x2, y2 = self.box
        return {
            "id": self.event_id,
            "camera": self.camera,
            "label": self.label,
            "sub_label": None,
            "score": round(self.score, 4),
            "top_score": round(self.top_score, 4),
            "box": [round(x1), round(y1), round(x2), round(y2)],
            "area": round(max(0.0, x2 - x1) * max(0.0, y2 - y1)),
            "frame_shape": [self.frame_size[1], self.frame_size[0]],
            "start_time": self.start_time,
            "end_time": self.end_time,
            "frame_time": self.last_seen,
            "active": self.end_time is None,
            "false_positive": False,
            "current_zones": [],
            "entered_zones": [],
            "has_snapshot": False,
            "has_clip": False,
            "track_id": self.track_id,
            "frames": self.frames,
            "identity": self.identity.name,
            "identity_class": self.identity.identity_class,
            "confidence": self.identity.confidence,
            "evidence": dict(self.identity.evidence),
            "global_id": self.identity.global_id,
        }


class TrackEvents:
    """Per-camera bookkeeping of open tracks; each call returns the events to publish, in order."""

    def __init__(
        self,
        camera: str,
        events: EventsConfig,
        objects: ObjectsConfig,
        lost_track_s: float,
        on_close: Callable[[TrackState, bool], None] | None = None,
    ) -> None:
        """on_close(state, announced) runs when a track ends, before its `end` event is built, so the
        identity stage can finalise the decision that event carries."""
        self.camera = camera
        self._on_close = on_close
        self._config = events
        self._objects = objects
        self._lost_track_s = lost_track_s
        self._open: dict[int, TrackState] = {}
        self._before: dict[int, dict[str, Any]] = {}
        self._sequence = 0
        self.tracks_announced = 0

    @property
    def open_tracks(self) -> list[TrackState]:
        return list(self._open.values())

    @property
    def states(self) -> dict[int, TrackState]:
        """Open tracks by track id (a live view: do not modify)."""
        return self._open

    def update(
        self, tracked: list[TrackedObject], frame: Frame, followed: bool = False
    ) -> list[dict[str, Any]]:
        """`followed`: the boxes come from the optical flow, not the detector. They move tracks and
        count as frames, but their labels and scores are not evidence: a track is announced only
        once the detector itself has seen it since it was confirmed (its top score comes only from
        detected frames), so one stray detection carried by the flow never becomes an event."""
        now = frame.timestamp
        events: list[dict[str, Any]] = []
        for obj in tracked:
            state = self._open.get(obj.track_id)
            if state is None:
                state = TrackState(
                    event_id=f"{now:.6f}-{secrets.token_hex(3)}",
                    camera=self.camera,
                    track_id=obj.track_id,
                    start_time=now,
                )
                self._open[obj.track_id] = state
            det = obj.detection
            if followed:
                state.labels.setdefault(det.label, 0)  # a label to file it under, not a vote
            else:
                state.labels[det.label] += 1
                state.score = det.score
                state.top_score = max(state.top_score, det.score)
            state.box = det.box
            state.frame_size = (frame.width, frame.height)
            state.last_seen = now
            state.frames += 1
            events.extend(self._maybe_announce(state, now))
        for track_id, state in list(self._open.items()):
            if now - state.last_seen > self._lost_track_s:
                events.extend(self._close(track_id, state))
        return events

    def refresh(self, state: TrackState, now: float) -> list[dict[str, Any]]:
        """Send an update right away (identity decided, say), bypassing the interval throttle."""
        if not state.announced or state.end_time is not None:
            return []
        return [self._emit("update", state, now)]

    def finish(self) -> list[dict[str, Any]]:
        """End every open track (the stream ended or the daemon stops)."""
        events: list[dict[str, Any]] = []
        for track_id, state in list(self._open.items()):
            events.extend(self._close(track_id, state))
        return events

    def _maybe_announce(self, state: TrackState, now: float) -> list[dict[str, Any]]:
        if not state.announced:
            # A track is announced once it is steady and one of its detections passed its label's bar.
            min_score = self._objects.filter_for(state.label).min_score
            if state.frames >= self._config.min_track_frames and state.top_score >= min_score:
                state.announced = True
                self.tracks_announced += 1
                return [self._emit("new", state, now)]
            return []
        if now - state.last_sent >= self._config.update_interval_s and self._changed(state):
            return [self._emit("update", state, now)]
        return []

    def _changed(self, state: TrackState) -> bool:
        if state.last_sent_snapshot is None:
            return True
        label, top, box, name = state.last_sent_snapshot
        if label != state.label or state.top_score > top or name != state.identity.name:
            return True
        width, height = state.frame_size
        diagonal = (width * width + height * height) ** 0.5 or 1.0
        moved = max(abs(a - b) for a, b in zip(box, state.box, strict=True))
        return moved > MOVE_FRACTION * diagonal

    def _close(self, track_id: int, state: TrackState) -> list[dict[str, Any]]:
        del self._open[track_id]
        if not state.announced:
            self._before.pop(track_id, None)
            if self._on_close is not None:
                self._on_close(state, False)
            return []  # a flicker that never became a track: nothing was published, nothing to end
        state.end_time = state.last_seen
        if self._on_close is not None:
            self._on_close(state, True)
        event = self._emit("end", state, state.last_seen)
        self._before.pop(track_id, None)
        return [event]

    def _emit(self, kind: EventType, state: TrackState, now: float) -> dict[str, Any]:
        after = state.snapshot()
        before = self._before.get(state.track_id, after)
        self._before[state.track_id] = after
        state.last_sent = now
        state.last_sent_snapshot = (state.label, state.top_score, state.box, state.identity.name)
        self._sequence += 1
        return {
            "type": kind,
            "message_id": f"{state.event_id}:{self._sequence}",
            "before": before,
            "after": after,
        }
