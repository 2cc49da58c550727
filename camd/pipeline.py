"""One camera's path through the pipeline: frames -> detections -> tracks -> events.

The detector is shared by every camera (one model in memory); it is not safe to call from two
threads at once, so calls go through a lock. Everything else here belongs to one camera thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from camd.config import Config
from camd.events import TrackEvents
from camd.sources.status import CameraStatus
from camd.sources.stream import CameraSource
from camd.types import Detection, Frame
from camd.vision.detector import Detector, filter_detections
from camd.vision.motion import MotionGate
from camd.vision.tracker import ObjectTracker

if TYPE_CHECKING:
    from camd.identity.service import IdentityService

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]


class SharedDetector:
    """A detector several camera threads share; calls are serialised and timed."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self._lock = threading.Lock()

    def detect(self, image: Any) -> tuple[list[Detection], float]:
        with self._lock:
            started = time.perf_counter()
            detections = self.detector.detect(image)
            return detections, (time.perf_counter() - started) * 1000.0


@dataclass
class CameraStats:
    frames: int = 0
    skipped: int = 0  # frames the motion gate kept from the detector
    events: int = 0
    # recent detector timings only: the daemon runs for months
    detect_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None

    def fps(self) -> float:
        end = self.finished_at or time.monotonic()
        elapsed = end - self.started_at
        return self.frames / elapsed if elapsed > 0 else 0.0


class CameraPipeline:
    """Runs one camera until its source ends or `stop` is set; never raises out of `run`."""

    def __init__(
        self,
        name: str,
        config: Config,
        detector: SharedDetector,
        sink: EventSink,
        stop: threading.Event,
        on_status: Callable[[CameraStatus], None] | None = None,
        identity: IdentityService | None = None,
    ) -> None:
        camera = config.cameras[name]
        self.name = name
        self._detector = detector
        self._sink = sink
        self._objects = config.objects_for(name)
        self.source = CameraSource(name, camera, stop, on_status=on_status)
        activation = min(self._objects.filter_for(label).min_score for label in self._objects.track)
        self.tracker = ObjectTracker(config.tracker, fps=camera.detect_fps, activation_score=activation)
        # Identity gathers per-track evidence and finalises each track before its `end` event.
        self.identity = identity.camera(name) if identity is not None else None
        self.track_events = TrackEvents(
            name, config.events, self._objects, config.tracker.lost_track_s,
            on_close=self.identity.close if self.identity is not None else None,
        )  # fmt: skip
        self.gate = MotionGate(camera.motion)
        self.stats = CameraStats()

    def run(self) -> None:
        try:
            for frame in self.source.frames():
                self.process(frame)
        except Exception:  # a bug in one camera must not take the others down
            log.exception("camera %s: pipeline failed", self.name)
        finally:
            self._publish(self.track_events.finish())
            self.stats.finished_at = time.monotonic()

    def process(self, frame: Frame) -> None:
        self.stats.frames += 1
        if self.stats.first_frame_at is None:
            self.stats.first_frame_at = frame.timestamp
        self.stats.last_frame_at = frame.timestamp
        open_boxes = [state.box for state in self.track_events.open_tracks]
        if not self.gate.should_detect(frame.image, frame.timestamp, open_boxes):
            self.stats.skipped += 1  # nothing new moved: the tracker bridges to the next detection
            return
        detections, elapsed_ms = self._detector.detect(frame.image)
        detections = filter_detections(detections, self._objects)
        tracked = self.tracker.update(detections, frame.timestamp)
        self._publish(self.track_events.update(tracked, frame))
        if self.identity is not None:
            for state in self.identity.observe(frame, tracked, self.track_events.states):
                self._publish(self.track_events.refresh(state, frame.timestamp))
        self.stats.detect_ms.append(elapsed_ms)

    def _publish(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.stats.events += 1
            self._sink(event)
