"""The inference pool: one detector for all cameras, fed fairly, never queueing without bound.

Each camera hands its sampled frames, in order, to its own lane (a bounded queue). Frames the
motion gate sends to the detector wait there; frames it skips pass straight through, so the
camera's consumer still sees every frame in order. Worker threads take waiting frames round-robin
across cameras (a busy camera cannot starve a quiet one) and, with batch > 1, run several in one
call. When a live camera's lane is full, the oldest frame not already in the detector is dropped
and counted: under overload camd analyses what the camera sees now, at a lower rate, with
bounded memory and latency. A file's lane makes the reader wait instead (a recording is not skipped).

Threads: the camera thread submits, a worker detects, the camera's consumer thread takes the
results in frame order (tracking and identity run there, beside the next detection).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from camd.config.schema import DetectorConfig, FarConfig
from camd.types import Box, Detection, Frame
from camd.vision.detector import Detector, create_detector, detect_batch
from camd.vision.far import FarLook, far_pass

log = logging.getLogger(__name__)

DROP_LOG_EVERY_S = 60.0  # a saturated hub logs its drops once a minute per camera, not per frame
ERROR_LOG_EVERY_S = 60.0
_IDLE_WAIT_S = 0.5

ItemState = Literal["waiting", "running", "done"]


@dataclass(eq=False)
class LaneItem:
    """One sampled frame of one camera on its way through the pool."""

    frame: Frame
    detect: bool  # False: the motion gate skipped it; it only keeps its place in the order
    state: ItemState = "waiting"
    detections: list[Detection] = field(default_factory=list)
    elapsed_ms: float = 0.0  # the detector's time for this frame (a batch's time shared out)
    failed: bool = False  # the detector raised on it: handled like a skipped frame
    # The moving regions the motion gate saw in this frame: the detector's answer explains them
    # (camd/vision/gate.py); None for a frame the gate kept from the detector.
    regions: tuple[Box, ...] | None = None
    far: FarLook | None = None  # what the far pass is shown besides (camd/vision/far.py)
    submitted_at: float = field(default_factory=time.monotonic)

    def far_inputs(self) -> tuple[tuple[Box, ...], tuple[Box, ...]]:
        """(moving regions, predicted track boxes) for the far pass."""
        look = self.far
        if look is None:
            return self.regions or (), ()
        return (self.regions or ()) if look.regions is None else look.regions, look.hints


class CameraLane:
    """One camera's bounded queue into the pool. `submit` from the camera thread, `next` from
    its consumer thread; both may block (the consumer until the head frame is done)."""

    def __init__(self, pool: InferencePool, camera: str, capacity: int, drop_oldest: bool) -> None:
        self.pool = pool
        self.camera = camera
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self.items: deque[LaneItem] = deque()
        self.dropped = 0  # frames dropped because the detector (or the consumer) fell behind
        self.closed = False
        self.closed_at: float | None = None
        self._drops_unlogged = 0
        self._drop_logged_at = 0.0

    # -- camera thread ------------------------------------------------------------------------

    def submit(
        self,
        frame: Frame,
        detect: bool,
        halted: Callable[[], bool] = lambda: False,
        regions: tuple[Box, ...] | None = None,
        far: FarLook | None = None,
    ) -> bool:
        """Queue a frame. False when the lane is closed (or `halted` while waiting for room)."""
        item = LaneItem(frame, detect, state="waiting" if detect else "done", regions=regions, far=far)
        cond = self.pool.cond
        message = None
        with cond:
            while not self.closed and len(self.items) >= self.capacity:
                if self.drop_oldest:
                    victim = next((i for i in self.items if i.state != "running"), None)
                    if victim is None:  # every queued frame is in the detector: drop the new one
                        self._count_drop()
                        message = self._drop_message()
                        break
                    self.items.remove(victim)
                    self._count_drop()
                    message = self._drop_message()
                    continue
                if halted():
                    return False
                cond.wait(0.1)
            else:
                if self.closed:
                    return False
                self.items.append(item)
                cond.notify_all()
        if message is not None:
            log.warning(message)
        return True

    def _count_drop(self) -> None:
        self.dropped += 1
        self._drops_unlogged += 1

    def _drop_message(self) -> str | None:
        now = time.monotonic()
        if now - self._drop_logged_at < DROP_LOG_EVERY_S:
            return None
        first = self._drop_logged_at == 0.0
        self._drop_logged_at = now
        count, self._drops_unlogged = self._drops_unlogged, 0
        since = "" if first else f" in the last {DROP_LOG_EVERY_S:.0f} s"
        return (
            f"camera {self.camera}: the detector is behind; dropped {count} oldest frame(s){since} "
            f"({self.dropped} in all). Lower detect_fps, enable the motion gate or move cameras to "
            "another hub (docs/scaling.md)"
        )

    def skip_waiting(self) -> int:
        """Frames still waiting for the detector are passed through undetected (the camera's detect
        switch went off: nothing queued before it is detected after it); returns how many."""
        with self.pool.cond:
            waiting = [item for item in self.items if item.state == "waiting"]
            for item in waiting:
                item.detect, item.state = False, "done"
            self.pool.cond.notify_all()
        return len(waiting)

    def close(self, discard: bool = False) -> None:
        """No more frames. discard: forget those still waiting for the detector (shutdown)."""
        with self.pool.cond:
            self.closed = True
            self.closed_at = time.monotonic()
            if discard:
                for item in [i for i in self.items if i.state == "waiting"]:
                    self.items.remove(item)
            self.pool.cond.notify_all()

    # -- consumer thread ----------------------------------------------------------------------

    def next(self, timeout: float) -> LaneItem | None:
        """The oldest frame once it is done (skipped frames are done at once); None on timeout
        or when the lane is closed and empty (see `finished`)."""
        cond = self.pool.cond
        deadline = time.monotonic() + timeout
        with cond:
            while True:
                if self.items and self.items[0].state == "done":
                    item = self.items.popleft()
                    cond.notify_all()  # room for a file reader waiting in submit
                    return item
                if self.closed and not self.items:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                cond.wait(remaining)

    @property
    def finished(self) -> bool:
        with self.pool.cond:
            return self.closed and not self.items

    @property
    def depth(self) -> int:
        """Frames queued (waiting, in the detector, or done and not yet taken)."""
        return len(self.items)


class InferenceWorker:
    """A thread with its own detector. `lock` is held during every inference call: nothing else
    touches this detector, and a test can hold it to simulate a hung call."""

    def __init__(self, pool: InferencePool, detector: Detector, index: int) -> None:
        self.pool = pool
        self.detector = detector
        self.index = index
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"camd-inference-{index}", daemon=True)

    def _run(self) -> None:
        pool = self.pool
        while True:
            with pool.cond:
                while not (items := pool.take_locked()):
                    if pool.stopped:
                        return
                    pool.cond.wait(_IDLE_WAIT_S)
            started = time.perf_counter()
            failed = False
            try:
                with self.lock:
                    results = detect_batch(self.detector, [item.frame.image for item in items])
                    if pool.far is not None:  # a second look at motion the first pass left unexplained
                        results = [
                            _far(self.detector, item, found, pool.far)
                            for item, found in zip(items, results, strict=True)
                        ]
            except Exception as exc:  # one bad frame must not take the detector down for every camera
                failed = True
                results = [[] for _ in items]
                pool.note_error(exc, len(items))
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            pool.finish(items, results, elapsed_ms, failed)


def _far(detector: Detector, item: LaneItem, found: list[Detection], config: FarConfig) -> list[Detection]:
    regions, hints = item.far_inputs()
    if not regions and not hints:
        return found
    return far_pass(detector, item.frame.image, found, regions, config, hints=hints)


class InferencePool:
    """Shared by every camera of the daemon. `detectors`: one per worker thread (a detector is
    not assumed thread-safe). batch: at most this many frames per inference call."""

    def __init__(self, detectors: list[Detector], batch: int = 1, far: FarConfig | None = None) -> None:
        if not detectors:
            raise ValueError("the inference pool needs at least one detector")
        self.cond = threading.Condition()
        self.batch = max(1, batch)
        self.far = far if far is not None and far.enabled else None
        self.lanes: list[CameraLane] = []
        self.workers = [InferenceWorker(self, detector, i) for i, detector in enumerate(detectors)]
        self.stopped = False
        self._started = False
        self._next_lane = 0
        # Counters for /metrics and the bench.
        self.calls = 0
        self.frames = 0
        self.errors = 0
        self.busy_ms = 0.0
        self.recent_ms: deque[float] = deque(maxlen=5000)  # per frame, recent only: camd runs for months
        self._error_logged_at = 0.0

    @classmethod
    def from_config(cls, config: DetectorConfig, models_dir: Path) -> InferencePool:
        detectors = [create_detector(config, models_dir) for _ in range(config.workers)]
        return cls(detectors, batch=config.batch, far=config.far)

    @property
    def detector(self) -> Detector:
        """The first worker's detector (for callers that need the model itself, e.g. its name)."""
        return self.workers[0].detector

    def start(self) -> InferencePool:
        with self.cond:
            if self._started:
                return self
            self._started = True
        for worker in self.workers:
            worker.thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        for worker in self.workers:
            if worker.thread.is_alive():
                worker.thread.join(timeout)

    def lane(self, camera: str, capacity: int, drop_oldest: bool) -> CameraLane:
        """A new lane for one camera (the pool starts on first use)."""
        lane = CameraLane(self, camera, max(2, capacity), drop_oldest)
        with self.cond:
            self.lanes.append(lane)
        self.start()
        return lane

    def remove(self, lane: CameraLane) -> None:
        with self.cond:
            if lane in self.lanes:
                self.lanes.remove(lane)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold every worker's detector (as a hung inference call would)."""
        for worker in self.workers:
            worker.lock.acquire()
        try:
            yield
        finally:
            for worker in self.workers:
                worker.lock.release()

    # -- called by workers with `cond` held ----------------------------------------------------

    def take_locked(self) -> list[LaneItem]:
        """Up to `batch` waiting frames, one per camera per round, starting after the camera
        served last, so every camera gets its turn. Within a camera, oldest first."""
        taken: list[LaneItem] = []
        count = len(self.lanes)
        if count == 0:
            return taken
        progress = True
        while progress and len(taken) < self.batch:
            progress = False
            for step in range(count):
                index = (self._next_lane + step) % count
                lane = self.lanes[index]
                item = next((i for i in lane.items if i.state == "waiting"), None)
                if item is None:
                    continue
                item.state = "running"
                taken.append(item)
                progress = True
                if len(taken) >= self.batch:
                    self._next_lane = (index + 1) % count
                    return taken
            self._next_lane = (self._next_lane + 1) % count
        return taken

    def finish(
        self, items: list[LaneItem], results: list[list[Detection]], elapsed_ms: float, failed: bool
    ) -> None:
        per_frame = elapsed_ms / max(1, len(items))
        with self.cond:
            for item, detections in zip(items, results, strict=True):
                item.detections = detections
                item.elapsed_ms = per_frame
                item.failed = failed
                item.state = "done"
            self.calls += 1
            self.frames += len(items)
            self.busy_ms += elapsed_ms
            if not failed:
                self.recent_ms.extend([per_frame] * len(items))
            self.cond.notify_all()

    def note_error(self, exc: Exception, frames: int) -> None:
        with self.cond:
            self.errors += frames
            now = time.monotonic()
            if now - self._error_logged_at < ERROR_LOG_EVERY_S:
                return
            self._error_logged_at = now
        log.error(
            "detector failed on %d frame(s) (%s: %s); those frames are skipped (%d so far)",
            frames,
            type(exc).__name__,
            exc,
            self.errors,
        )


class SharedDetector(InferencePool):
    """One detector shared by every camera: a pool of one worker (the name earlier code used)."""

    def __init__(self, detector: Detector, batch: int = 1) -> None:
        super().__init__([detector], batch=batch)
