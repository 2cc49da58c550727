"""One camera's path through the pipeline: frames -> detections -> tracks -> events.

Two threads per camera around the shared inference pool (camd/vision/pool.py):
- the camera thread takes each sampled frame, asks the motion gate whether the detector should
  see it, and submits it to the camera's lane of the pool (skipped frames keep their place);
- the consumer thread takes the frames back in order, detections attached, and runs tracking,
  events and identity, while the pool already works on the next frame.
Tracker, events and identity belong to the consumer thread only; the gate belongs to the camera
thread, which reads what the consumer learnt (tracks, examined motion) as a `_GateView`.

A file read as fast as it decodes is replayed exactly: the gate for the n-th frame sees the view the
consumer published for frame n - REPLAY_LAG_FRAMES, not whatever it has reached by then, so the same
file gives the same detections, tracks and identities on every run, however loaded the machine.
A live camera (or a file played in real time) cannot wait: its gate reads the newest view.

With a `detect_url` (a low-resolution substream), detection runs on the substream and identity
takes its crops from the main stream's frame nearest in time, boxes scaled (camd/sources/mainstream.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from camd.config import Config
from camd.events import TrackEvents
from camd.geometry import scale_box
from camd.sources.mainstream import MainStream
from camd.sources.status import CameraStatus
from camd.sources.stream import CameraSource
from camd.tracks import CameraTracks
from camd.types import Box, Detection, Frame, TrackedObject, TrackEvent
from camd.vision.detector import Detector, filter_detections
from camd.vision.flow import BoxFlow
from camd.vision.motion import MotionGate
from camd.vision.pool import CameraLane, InferencePool, LaneItem, SharedDetector
from camd.vision.tracker import ObjectTracker

if TYPE_CHECKING:
    from camd.identity.service import IdentityService

log = logging.getLogger(__name__)

EventSink = Callable[[TrackEvent], None]
# (frame, detector ran on it, boxes of the announced tracks the pipeline believes are there):
# the bench records these to compare the gated pipeline's tracks with the naive one's.
FrameObserver = Callable[[Frame, bool, list[tuple[int, Box]]], None]

_POLL_S = 0.1
STOP_GRACE_S = 2.0  # at shutdown, how long the consumer waits for a frame still in the detector
MAX_PREDICT_S = 1.0  # the gate extrapolates a track's box at most this far past its last detection
# Replay: the detector works on one frame while the consumer handles the one before it.
REPLAY_LAG_FRAMES = 2

__all__ = ["CameraPipeline", "CameraStats", "EventSink", "FrameObserver", "SharedDetector"]


@dataclass
class CameraStats:
    frames: int = 0  # frames through the consumer (detected or skipped by the gate), in order
    skipped: int = 0  # frames the motion gate kept from the detector
    events: int = 0
    lane: CameraLane | None = None
    # recent detector timings only: the daemon runs for months
    detect_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    # seconds from a frame's capture to the end of its processing (recent frames)
    latency_s: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    main_frames: int = 0  # identity crops taken from the main stream (with a detect_url)
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None

    @property
    def dropped(self) -> int:
        """Frames dropped in the inference queue because the detector fell behind."""
        return self.lane.dropped if self.lane is not None else 0

    @property
    def queued(self) -> int:
        return self.lane.depth if self.lane is not None else 0

    def fps(self) -> float:
        end = self.finished_at or time.monotonic()
        elapsed = end - self.started_at
        return self.frames / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class _TrackMotion:
    """A track's last detected box and its velocity (px/s), for the gate's prediction."""

    box: Box
    at: float
    velocity: Box = (0.0, 0.0, 0.0, 0.0)

    def box_at(self, t: float) -> Box:
        dt = min(max(0.0, t - self.at), MAX_PREDICT_S)
        return tuple(b + v * dt for b, v in zip(self.box, self.velocity, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class _GateView:
    """What the consumer knew after handling its `order`-th frame, for the gate on the camera thread."""

    order: int
    tracks: tuple[_TrackMotion, ...] = ()
    examined: tuple[Box, ...] = ()  # moving regions of the frame the detector last answered for


class CameraPipeline:
    """Runs one camera until its source ends or `stop` is set; never raises out of `run`.

    `detector` is the daemon's shared InferencePool, or a bare Detector (the pipeline then makes
    a private pool of one worker for it).
    """

    def __init__(
        self,
        name: str,
        config: Config,
        detector: InferencePool | Detector,
        sink: EventSink,
        stop: threading.Event,
        on_status: Callable[[CameraStatus], None] | None = None,
        identity: IdentityService | None = None,
    ) -> None:
        camera = config.cameras[name]
        self.name = name
        self._own_pool = not isinstance(detector, InferencePool)
        self.pool = detector if isinstance(detector, InferencePool) else InferencePool([detector])
        self._sink = sink
        self._stop = stop
        self._objects = config.objects_for(name)
        detect_camera = camera.model_copy(update={"url": camera.detect_url}) if camera.detect_url else camera
        self.source = CameraSource(name, detect_camera, stop, on_status=on_status)
        self.main: MainStream | None = None
        if camera.detect_url is not None and identity is not None and identity.enabled:
            self.main = MainStream(name, camera, stop, origin=lambda: self.source.clock_origin)
        self.tracker = ObjectTracker.for_objects(config.tracker, self._objects, fps=camera.detect_fps)
        # Identity gathers per-track evidence and decides each track before its `end` event is built.
        self.identity = identity.camera(name) if identity is not None else None
        self.track_events = TrackEvents(name, config.events, self._objects, config.tracker.lost_track_s)
        self.tracks = CameraTracks(self.track_events, self.identity)
        self.gate = MotionGate(camera.motion)
        # Between detections, tracked boxes follow the picture (optical flow), see camd/vision/flow.py.
        self.flow = BoxFlow() if camera.motion.enabled and camera.motion.follow else None
        self._followed: dict[int, Detection] = {}  # the last detected frame's detections, by index
        self.lane = self.pool.lane(
            name, config.detector.queue_frames, drop_oldest=self.source.drops_when_behind
        )
        self.stats = CameraStats(lane=self.lane)
        self.detect_enabled = True  # the detect switch (MQTT <prefix>/<camera>/detect/set), see set_detect
        self.on_frame: FrameObserver | None = None
        # Published by the consumer, read by the camera thread (see the module docstring).
        self._replay = not self.source.drops_when_behind
        self._views: deque[_GateView] = deque([_GateView(0)], maxlen=REPLAY_LAG_FRAMES + 2)
        self._views_changed = threading.Condition()
        self._submitted = 0  # frames handed to the lane (camera thread)
        self._consumer: threading.Thread | None = None
        self._motion: dict[int, _TrackMotion] = {}
        self._examined: tuple[Box, ...] = ()
        self._last_detect_at: float | None = None

    # -- camera thread -------------------------------------------------------------------------

    def run(self) -> None:
        consumer = threading.Thread(target=self._consume, name=f"camera-{self.name}-track", daemon=True)
        self._consumer = consumer
        consumer.start()
        if self.main is not None:
            self.main.start()
        try:
            for frame in self.source.frames():
                if not self.process(frame):
                    break
        except Exception:  # a bug in one camera must not take the others down
            log.exception("camera %s: pipeline failed", self.name)
        finally:
            self.lane.close(discard=self._stop.is_set())
            consumer.join()
            self.pool.remove(self.lane)
            if self._own_pool:
                self.pool.stop()
            self.stats.finished_at = time.monotonic()

    def set_detect(self, on: bool) -> None:
        """The detect switch. Off: frames queued before it are not detected either."""
        self.detect_enabled = on
        if not on:
            self.lane.skip_waiting()

    def process(self, frame: Frame) -> bool:
        """Gate one frame and queue it for the consumer. False when the pipeline is closing."""
        self._submitted += 1
        if not self.detect_enabled:  # the detect switch is off: the consumer lets open tracks end
            return self.lane.submit(frame, False, halted=self._stop.is_set, context=None)
        view = self._gate_view(max(0, self._submitted - REPLAY_LAG_FRAMES))
        self.gate.examined(view.examined)
        boxes = [motion.box_at(frame.timestamp) for motion in view.tracks]
        detect = self.gate.should_detect(frame.image, frame.timestamp, boxes)
        regions = self.gate.last_regions if detect else None  # for the gate's feedback, below
        return self.lane.submit(frame, detect, halted=self._stop.is_set, context=regions)

    def _gate_view(self, order: int) -> _GateView:
        """Replay: the view after the consumer's `order`-th frame, waiting for it; live: the newest."""
        with self._views_changed:
            while self._replay and self._views[-1].order < order:
                consumer = self._consumer
                if self._stop.is_set() or consumer is None or not consumer.is_alive():
                    break  # shutting down, or the consumer failed: the lane refuses the frame anyway
                self._views_changed.wait(_POLL_S)
            if self._replay:
                for view in self._views:
                    if view.order == order:
                        return view
            return self._views[-1]

    # -- consumer thread -----------------------------------------------------------------------

    def _publish_view(self) -> None:
        """The gate's view after this frame's tracks and motion are known (identity comes later)."""
        order = self.stats.frames
        with self._views_changed:
            if self._views[-1].order == order:
                return  # published once its tracks were known: identity's work since changes none of it
            self._views.append(_GateView(order, tuple(self._motion.values()), self._examined))
            self._views_changed.notify_all()

    def _consume(self) -> None:
        try:
            while True:
                item = self.lane.next(_POLL_S)
                if item is not None:
                    self._handle(item)
                    self._publish_view()
                    continue
                if self.lane.finished:
                    break
                closed_at = self.lane.closed_at
                overdue = closed_at is not None and time.monotonic() - closed_at > STOP_GRACE_S
                if self._stop.is_set() and overdue:
                    log.warning("camera %s: a frame is still in the detector at shutdown; not waiting",
                                self.name)
                    break
        except Exception:
            log.exception("camera %s: pipeline failed", self.name)
            self.lane.close(discard=True)  # the camera thread stops submitting
        finally:
            try:
                self._publish(self.tracks.finish())
            except Exception:
                log.exception("camera %s: ending the open tracks failed", self.name)
            if self.main is not None:
                self.main.close()

    def _handle(self, item: LaneItem) -> None:
        frame = item.frame
        self.stats.frames += 1
        if self.stats.first_frame_at is None:
            self.stats.first_frame_at = frame.timestamp
        self.stats.last_frame_at = frame.timestamp
        if not item.detect or item.failed:
            # Nothing new moved (or the detector failed): the tracker bridges to the next detection.
            if not item.detect:
                self.stats.skipped += 1
            if not self.detect_enabled:  # switched off: nothing is detected, open tracks run out and end
                self._publish(self.tracks.update(self.tracker.update([], frame.timestamp), frame))
            if not item.failed and self.detect_enabled:
                self._follow(frame)
            self._observe(frame, detected=False)
            return
        if item.context is not None:  # the motion the detector looked at is explained now
            self._examined = tuple(item.context)
        detections = filter_detections(item.detections, self._objects)
        tracked = self.tracker.update(detections, frame.timestamp)
        self._publish(self.tracks.update(tracked, frame))
        if self.flow is not None:  # all of them: a new track needs several frames to be confirmed
            self._followed = dict(enumerate(detections))
            self.flow.reset(frame.image, {i: det.box for i, det in self._followed.items()})
        # The gate (on the camera thread) sees the new tracks before identity's slower work here.
        self._last_detect_at = frame.timestamp
        self._remember_motion(frame.timestamp)
        self._publish_view()
        if self.identity is not None and tracked:
            self._publish(self.tracks.identify(*self._identity_view(frame, tracked)))
        self.stats.detect_ms.append(item.elapsed_ms)
        self.stats.latency_s.append(max(0.0, time.time() - frame.timestamp))
        self._observe(frame, detected=True)

    def _follow(self, frame: Frame) -> None:
        """A frame the detector skipped: move the boxes it last saw along the optical flow and feed
        them to the tracker as that frame's detections."""
        if self.flow is None:
            return
        moved = self.flow.follow(frame.image)
        followed = [
            Detection(self._followed[i].label, self._followed[i].score, box) for i, box in moved.items()
        ]
        if not followed:
            return
        tracked = self.tracker.update(followed, frame.timestamp)
        self._publish(self.tracks.update(tracked, frame, followed=True))
        self._remember_motion(frame.timestamp)

    def _remember_motion(self, now: float) -> None:
        """Per open track, its box and velocity: the gate checks motion against where each
        tracked object should be now, not where it was at the last detection."""
        motion: dict[int, _TrackMotion] = {}
        for track_id, state in self.track_events.states.items():
            previous = self._motion.get(track_id)
            if previous is not None and state.last_seen == now and now > previous.at:
                dt = now - previous.at
                step = tuple((b - p) / dt for b, p in zip(state.box, previous.box, strict=True))
                # Smoothed: one jumpy box must not throw the prediction off.
                velocity = tuple(0.5 * s + 0.5 * v for s, v in zip(step, previous.velocity, strict=True))
                motion[track_id] = _TrackMotion(state.box, now, velocity)  # type: ignore[arg-type]
            elif previous is not None and state.last_seen != now:
                motion[track_id] = previous  # not seen this frame: keep predicting from the last sighting
            else:
                motion[track_id] = _TrackMotion(state.box, state.last_seen)
        self._motion = motion

    def _observe(self, frame: Frame, detected: bool) -> None:
        if self.on_frame is None:
            return
        seen = []
        for tid, s in self.track_events.states.items():
            if not s.announced:
                continue
            if s.last_seen == frame.timestamp:  # detected, or followed by the flow, in this frame
                seen.append((tid, s.box))
            elif not detected and s.last_seen == self._last_detect_at and tid in self._motion:
                # Between detections the pipeline believes its tracks are where they move to.
                seen.append((tid, self._motion[tid].box_at(frame.timestamp)))
        self.on_frame(frame, detected, seen)

    def _identity_view(
        self, frame: Frame, tracked: list[TrackedObject]
    ) -> tuple[Frame, list[TrackedObject]]:
        """The frame identity crops from: the main stream's nearest frame (boxes scaled to it)
        when the camera has a detect substream and the main frame is at hand, else this one."""
        if self.main is None:
            return frame, tracked
        image = self.main.image_near(frame.timestamp)
        if image is None:
            return frame, tracked
        sx, sy = image.shape[1] / frame.width, image.shape[0] / frame.height
        self.stats.main_frames += 1
        main_frame = Frame(camera=frame.camera, index=frame.index, timestamp=frame.timestamp, image=image,
                           pts_seconds=frame.pts_seconds)
        scaled = [
            TrackedObject(obj.track_id, Detection(obj.detection.label, obj.detection.score,
                                                  scale_box(obj.detection.box, sx, sy)))
            for obj in tracked
        ]
        return main_frame, scaled

    def _publish(self, events: list[TrackEvent]) -> None:
        for event in events:
            self.stats.events += 1
            self._sink(event)

