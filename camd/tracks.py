"""One camera's tracks -> events, identity asked at the right moments.

The events stage (camd/events.py) and identity (CameraIdentity) never call each other;
this is where their values meet, on the camera's consumer thread:
- tracked objects -> TrackEvents.update -> `new` / `update` events;
- identity looks at a frame's tracked objects and may answer early (IdentityDecision) -> the events
  stage turns each into an `update`;
- a track ends -> identity decides it for good first (and stores the sighting) -> the events stage
  builds the `end` event from that decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from camd.events import EndedTrack, TrackEvents
from camd.types import Frame, IdentityDecision, TrackedObject, TrackEvent

if TYPE_CHECKING:
    from camd.identity.service import CameraIdentity


class CameraTracks:
    """Events for one camera's tracks, with identity's decisions in them (one thread only)."""

    def __init__(self, events: TrackEvents, identity: CameraIdentity | None = None) -> None:
        self.events = events
        self.identity = identity

    def update(self, tracked: list[TrackedObject], frame: Frame, followed: bool = False) -> list[TrackEvent]:
        """This frame's tracks: their `new` / `update` events, then the `end` of the tracks lost by now."""
        return self.events.update(tracked, frame, followed) + self._end(self.events.lost(frame.timestamp))

    def identify(self, frame: Frame, tracked: list[TrackedObject]) -> list[TrackEvent]:
        """Identity looks at this frame's tracked objects (boxes in `frame`'s pixels); an `update` for
        each track it names early."""
        if self.identity is None or not tracked:
            return []
        events: list[TrackEvent] = []
        for decision in self.identity.observe(frame, tracked, self.events.identities()):
            events += self.events.identify(decision, frame.timestamp)
        return events

    def finish(self) -> list[TrackEvent]:
        """End every open track (the stream ended or the daemon stops)."""
        return self._end(self.events.finish())

    def _end(self, ended: list[EndedTrack]) -> list[TrackEvent]:
        events: list[TrackEvent] = []
        for track in ended:
            decision: IdentityDecision | None = None
            if self.identity is not None and track.announced:
                decision = self.identity.end(track.track)  # decided (and stored) before its `end` is built
            elif self.identity is not None:
                self.identity.drop(track.track.track_id)  # a flicker: no sighting, no decision
            events += self.events.end(track, decision)
        return events
