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

from dataclasses import replace
from typing import TYPE_CHECKING

from camd.config import ObjectsConfig
from camd.events import EndedTrack, TrackEvents
from camd.types import Box, Detection, Frame, IdentityDecision, TrackedObject, TrackEvent
from camd.vision.detector import filter_detections
from camd.vision.flow import BoxFlow
from camd.vision.gate import GateFeedback
from camd.vision.scenecut import SceneCuts
from camd.vision.tracker import ObjectTracker

if TYPE_CHECKING:
    from camd.identity.camera import CameraIdentity
    from camd.sources.mainstream import MainStream


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


class CameraFrames:
    """One camera's frames -> tracked objects -> events (CameraTracks), on its consumer thread.

    A frame the detector answered for: its detections through the camera's object filters and the
    tracker. A frame it skipped: the boxes it last found carried along by optical flow (when the
    camera follows motion). Identity is shown the main stream's frame when the camera has one. After
    each, the gate learns where the tracks are heading (GateFeedback). A shot cut (SceneCuts) between
    two detected frames ends every open track first."""

    def __init__(
        self,
        tracks: CameraTracks,
        tracker: ObjectTracker,
        objects: ObjectsConfig,
        feedback: GateFeedback,
        flow: BoxFlow | None = None,
        main: MainStream | None = None,
        cuts: SceneCuts | None = None,
    ) -> None:
        self.tracks, self.tracker, self.objects = tracks, tracker, objects
        self.feedback, self.flow, self.main, self.cuts = feedback, flow, main, cuts
        self._followed: dict[int, Detection] = {}  # the last detected frame's detections, by index
        self._last_detect_at: float | None = None

    def detected(
        self, frame: Frame, detections: list[Detection]
    ) -> tuple[list[TrackEvent], list[TrackedObject]]:
        """A frame the detector answered for: its events, and the tracked objects identity looks at next."""
        events: list[TrackEvent] = []
        if self.cuts is not None and self.cuts.cut(frame.image):
            events += self.tracks.finish()  # nobody walks from one shot into the next
            self.tracker.reset()
        detections = filter_detections(detections, self.objects)
        tracked = self.tracker.update(detections, frame.timestamp)
        events += self.tracks.update(tracked, frame)
        if self.flow is not None:  # all of them: a new track needs several frames to be confirmed
            self._followed = dict(enumerate(detections))
            self.flow.reset(frame.image, {i: det.box for i, det in self._followed.items()})
        self._last_detect_at = frame.timestamp
        self.feedback.moved(self._positions(), frame.timestamp)
        return events, tracked

    def identify(self, frame: Frame, tracked: list[TrackedObject]) -> list[TrackEvent]:
        """Identity's look at a detected frame's tracked objects: on the main stream's frame when at hand."""
        if self.tracks.identity is None or not tracked:
            return []
        view = self.main.identity_view(frame, tracked) if self.main is not None else None
        return self.tracks.identify(*(view or (frame, tracked)))

    def followed(self, frame: Frame) -> list[TrackEvent]:
        """A frame the detector skipped: the boxes it last saw moved along the optical flow, fed to
        the tracker as this frame's detections."""
        if self.flow is None:
            return []
        moved = self.flow.follow(frame.image)
        followed = [replace(self._followed[i], box=box) for i, box in moved.items()]
        if not followed:
            return []
        events = self.tracks.update(self.tracker.update(followed, frame.timestamp), frame, followed=True)
        self.feedback.moved(self._positions(), frame.timestamp)
        return events

    def halted(self, frame: Frame) -> list[TrackEvent]:
        """A frame while the detect switch is off: nothing is detected, open tracks run out and end."""
        return self.tracks.update(self.tracker.update([], frame.timestamp), frame)

    def finish(self) -> list[TrackEvent]:
        return self.tracks.finish()

    def believed(self, frame: Frame, detected: bool) -> list[tuple[int, Box]]:
        """The boxes of the announced tracks the pipeline believes are in this frame (the bench compares
        the gated pipeline's with the naive one's): where they were detected or followed to, and between
        detections where the gate predicts them."""
        seen = []
        motion = self.feedback.motion
        for track_id, state in self.tracks.events.states.items():
            if not state.announced:
                continue
            if state.last_seen == frame.timestamp:  # detected, or followed by the flow, in this frame
                seen.append((track_id, state.box))
            elif not detected and state.last_seen == self._last_detect_at and track_id in motion:
                seen.append((track_id, motion[track_id].box_at(frame.timestamp)))
        return seen

    def _positions(self) -> dict[int, tuple[Box, float]]:
        return {track_id: (s.box, s.last_seen) for track_id, s in self.tracks.events.states.items()}
