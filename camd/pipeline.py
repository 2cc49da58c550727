"""One camera's path through the pipeline: frames -> detections -> tracks -> events.

Two threads per camera around the shared inference pool (camd/vision/pool.py):
- the camera thread takes each sampled frame, asks the motion gate whether the detector should
  see it (camd/vision/gate.py), and submits it to the camera's lane of the pool (skipped frames
  keep their place);
- the consumer thread takes the frames back in order, detections attached, and hands them to the
  camera's frame stage (camd/tracks.py: tracker, events, identity), while the pool already works
  on the next frame. After each frame it publishes what the gate needs to know.
This class only coordinates: the threads, the lane, the gate and the sink.

With a `detect_url` (a low-resolution substream), detection runs on the substream and identity
takes its crops from the main stream's frame nearest in time (camd/sources/mainstream.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from camd.config import Config
from camd.events import TrackEvents
from camd.sources.mainstream import MainStream
from camd.sources.status import CameraStatus
from camd.sources.stream import CameraSource
from camd.stats import CameraStats
from camd.tracks import CameraFrames, CameraTracks
from camd.types import Box, Frame, TrackEvent
from camd.vision.detector import Detector
from camd.vision.flow import BoxFlow
from camd.vision.gate import GateFeedback
from camd.vision.motion import MotionGate
from camd.vision.pool import InferencePool, LaneItem, SharedDetector
from camd.vision.scenecut import SceneCuts
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

__all__ = ["CameraPipeline", "CameraStats", "EventSink", "FrameObserver", "SharedDetector"]


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
        objects = config.objects_for(name)
        self.name, self._sink, self._stop = name, sink, stop
        self._own_pool = not isinstance(detector, InferencePool)
        far = config.detector.far  # the far-people pass (camd/vision/far.py)
        self.pool = detector if isinstance(detector, InferencePool) else InferencePool([detector], far=far)
        detect_camera = camera.model_copy(update={"url": camera.detect_url}) if camera.detect_url else camera
        self.source = CameraSource(name, detect_camera, stop, on_status=on_status)
        self.main: MainStream | None = None
        if camera.detect_url is not None and identity is not None and identity.enabled:
            self.main = MainStream(name, camera, stop, origin=lambda: self.source.clock_origin)
        self.gate = MotionGate(camera.motion, far=config.detector.far)
        self.feedback = GateFeedback(self.gate, replay=not self.source.drops_when_behind)
        self.tracker = ObjectTracker.for_objects(config.tracker, objects, fps=camera.detect_fps)
        self.track_events = TrackEvents(name, config.events, objects, config.tracker.lost_track_s)
        # Identity gathers per-track evidence and decides each track before its `end` event is built.
        self.identity = identity.camera(name) if identity is not None else None
        # Between detections, tracked boxes follow the picture (optical flow), see camd/vision/flow.py.
        flow = BoxFlow() if camera.motion.enabled and camera.motion.follow else None
        tracks = CameraTracks(self.track_events, self.identity)
        cuts = SceneCuts.for_tracker(config.tracker)
        self.frames = CameraFrames(tracks, self.tracker, objects, self.feedback, flow, self.main, cuts)
        drop_oldest = self.source.drops_when_behind
        self.lane = self.pool.lane(name, config.detector.queue_frames, drop_oldest=drop_oldest)
        self.stats = CameraStats(lane=self.lane, main=self.main)
        self.detect_enabled = True  # the detect switch (MQTT <prefix>/<camera>/detect/set), see set_detect
        self.on_frame: FrameObserver | None = None
        self._consumer: threading.Thread | None = None

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
        if not self.detect_enabled:  # the detect switch is off: the consumer lets open tracks end
            self.feedback.skip()
            return self.lane.submit(frame, False, halted=self._stop.is_set)
        detect, regions, far = self.feedback.should_detect(frame, waiting=self._consumer_waits)
        return self.lane.submit(frame, detect, halted=self._stop.is_set, regions=regions, far=far)

    def _consumer_waits(self) -> bool:
        consumer = self._consumer
        return not self._stop.is_set() and consumer is not None and consumer.is_alive()

    # -- consumer thread -----------------------------------------------------------------------

    def _consume(self) -> None:
        try:
            while True:
                item = self.lane.next(_POLL_S)
                if item is not None:
                    self._handle(item)
                    self.feedback.publish(self.stats.frames)
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
                self._publish(self.frames.finish())
            except Exception:
                log.exception("camera %s: ending the open tracks failed", self.name)
            if self.main is not None:
                self.main.close()

    def _handle(self, item: LaneItem) -> None:
        frame = item.frame
        self.stats.took(frame)
        detected = item.detect and not item.failed
        if detected:
            if item.regions is not None:  # the motion the detector looked at is explained now
                self.feedback.answered(item.regions)
            events, tracked = self.frames.detected(frame, item.detections)
            self._publish(events)
            self.feedback.publish(self.stats.frames)  # the gate sees the new tracks before identity's work
            self._publish(self.frames.identify(frame, tracked))
            self.stats.detect_ms.append(item.elapsed_ms)
            self.stats.latency_s.append(max(0.0, time.time() - frame.timestamp))
        else:  # nothing new moved (or the detector failed): the tracker bridges to the next detection
            if not item.detect:
                self.stats.skipped += 1
            if not self.detect_enabled:
                self._publish(self.frames.halted(frame))
            elif not item.failed:
                self._publish(self.frames.followed(frame))
        if self.on_frame is not None:
            self.on_frame(frame, detected, self.frames.believed(frame, detected))

    def _publish(self, events: list[TrackEvent]) -> None:
        for event in events:
            self.stats.events += 1
            self._sink(event)
