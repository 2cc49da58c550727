"""What one camera's pipeline counted: frames, gate skips, events, detector timings, latency."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from camd.types import Frame

if TYPE_CHECKING:
    from camd.sources.mainstream import MainStream
    from camd.vision.pool import CameraLane


@dataclass
class CameraStats:
    frames: int = 0  # frames through the consumer (detected or skipped by the gate), in order
    skipped: int = 0  # frames the motion gate kept from the detector
    events: int = 0
    lane: CameraLane | None = None
    main: MainStream | None = None  # the main stream identity crops from (with a detect_url)
    # recent detector timings only: the daemon runs for months
    detect_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    # seconds from a frame's capture to the end of its processing (recent frames)
    latency_s: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None

    def took(self, frame: Frame) -> None:
        """The consumer took the next frame (detected or not)."""
        self.frames += 1
        if self.first_frame_at is None:
            self.first_frame_at = frame.timestamp
        self.last_frame_at = frame.timestamp

    @property
    def main_frames(self) -> int:
        """Identity crops taken from the main stream's frame (not the substream's)."""
        return self.main.stats.served if self.main is not None else 0

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
