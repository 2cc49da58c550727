"""Track lifecycle -> events: `new`, throttled `update`s, `end` (TrackEvent values).

The events stage keeps one camera's open tracks. Each call returns the events to publish, in order;
it never calls another stage. A track's end is two calls, so that identity decides in between:
`lost` (or `finish`) takes the ended tracks out, and `end` builds each one's `end` event with
identity's final decision. Identity's early decisions come in through `identify`.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field, replace

from camd.config import EventsConfig, ObjectsConfig
from camd.types import (
    UNDECIDED,
    Box,
    EventKind,
    Frame,
    Identity,
    IdentityDecision,
    TrackedObject,
    TrackEvent,
    TrackSnapshot,
)

# A box that moved by more than this fraction of the frame's diagonal counts as a change.
MOVE_FRACTION = 0.05


@dataclass
class TrackState:
    """What the events stage knows about one open track, updated every frame it is seen."""

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
    identity: Identity = UNDECIDED

    @property
    def label(self) -> str:
        """The most frequent label: SSD flips car/truck on one vehicle, a vote steadies it."""
        return self.labels.most_common(1)[0][0]

    def snapshot(self) -> TrackSnapshot:
        return TrackSnapshot(
            event_id=self.event_id, camera=self.camera, track_id=self.track_id, label=self.label,
            score=self.score, top_score=self.top_score, box=self.box, frame_size=self.frame_size,
            start_time=self.start_time, frame_time=self.last_seen, frames=self.frames,
            end_time=self.end_time, identity=self.identity,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class EndedTrack:
    """A track taken out of the open ones: its last snapshot (end_time set) and whether it was
    announced (a `new` went out, so an `end` must follow; a flicker that never was gets none)."""

    track: TrackSnapshot
    announced: bool


class TrackEvents:
    """Per-camera bookkeeping of open tracks; each call returns the events to publish, in order."""

    def __init__(
        self, camera: str, events: EventsConfig, objects: ObjectsConfig, lost_track_s: float
    ) -> None:
        self.camera = camera
        self._config = events
        self._objects = objects
        self.lost_track_s = lost_track_s
        self._open: dict[int, TrackState] = {}
        self._before: dict[int, TrackSnapshot] = {}  # what the last event of each track said
        self._sequence = 0
        self.tracks_announced = 0

    @property
    def open_tracks(self) -> list[TrackState]:
        return list(self._open.values())

    @property
    def states(self) -> dict[int, TrackState]:
        """Open tracks by track id (a live view: do not modify)."""
        return self._open

    def identities(self) -> dict[int, Identity]:
        """Who each open track is, as its events say."""
        return {track_id: state.identity for track_id, state in self._open.items()}

    def update(self, tracked: list[TrackedObject], frame: Frame, followed: bool = False) -> list[TrackEvent]:
        """The `new` and `update` events of this frame's tracks (ended tracks: `lost`).

        `followed`: the boxes come from the optical flow, not the detector. They move tracks and
        count as frames, but their labels and scores are not evidence: a track is announced only
        once the detector itself has seen it since it was confirmed (its top score comes only from
        detected frames), so one stray detection carried by the flow never becomes an event."""
        now = frame.timestamp
        events: list[TrackEvent] = []
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
        return events

    def lost(self, now: float) -> list[EndedTrack]:
        """Take out the tracks not seen for lost_track_s; each needs `end` next."""
        return [
            self._take(track_id, state)
            for track_id, state in list(self._open.items())
            if now - state.last_seen > self.lost_track_s
        ]

    def finish(self) -> list[EndedTrack]:
        """Take out every open track (the stream ended or the daemon stops); each needs `end` next."""
        return [self._take(track_id, state) for track_id, state in list(self._open.items())]

    def end(self, ended: EndedTrack, decision: IdentityDecision | None = None) -> list[TrackEvent]:
        """The `end` event of an announced track, carrying identity's final decision and crop."""
        track_id = ended.track.track_id
        if not ended.announced:
            self._before.pop(track_id, None)
            return []  # a flicker that never became a track: nothing was published, nothing to end
        after = ended.track
        crop = None
        if decision is not None:
            after = replace(after, identity=decision.identity)
            crop = decision.crop_jpeg
        before = self._before.pop(track_id, after)
        return [TrackEvent(EventKind.END, self._next_message_id(after.event_id), before, after, crop)]

    def identify(self, decision: IdentityDecision, now: float) -> list[TrackEvent]:
        """An early decision for an open track: its events say so from now on, and an announced
        track gets an `update` right away, bypassing the interval throttle."""
        state = self._open.get(decision.track_id)
        if state is None:
            return []
        state.identity = decision.identity
        if not state.announced or state.end_time is not None:
            return []
        return [self._emit(EventKind.UPDATE, state, now)]

    def _take(self, track_id: int, state: TrackState) -> EndedTrack:
        del self._open[track_id]
        if state.announced:
            state.end_time = state.last_seen
        return EndedTrack(state.snapshot(), state.announced)

    def _maybe_announce(self, state: TrackState, now: float) -> list[TrackEvent]:
        if not state.announced:
            # A track is announced once it is steady and one of its detections passed its label's bar.
            min_score = self._objects.filter_for(state.label).min_score
            if state.frames >= self._config.min_track_frames and state.top_score >= min_score:
                state.announced = True
                self.tracks_announced += 1
                return [self._emit(EventKind.NEW, state, now)]
            return []
        if now - state.last_sent >= self._config.update_interval_s and self._changed(state):
            return [self._emit(EventKind.UPDATE, state, now)]
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

    def _emit(self, kind: EventKind, state: TrackState, now: float) -> TrackEvent:
        after = state.snapshot()
        before = self._before.get(state.track_id, after)
        self._before[state.track_id] = after
        state.last_sent = now
        state.last_sent_snapshot = (state.label, state.top_score, state.box, state.identity.name)
        return TrackEvent(kind, self._next_message_id(state.event_id), before, after)

    def _next_message_id(self, event_id: str) -> str:
        self._sequence += 1
        return f"{event_id}:{self._sequence}"

