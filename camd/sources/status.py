"""The per-camera status value: what the daemon reports on `<prefix>/<camera>/status`."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

CameraState = Literal["starting", "online", "reconnecting", "ended", "stopped"]

_FPS_WINDOW = 20  # frames; long enough to smooth jitter, short enough to show a stall quickly


@dataclass(slots=True)
class CameraStatus:
    camera: str
    state: CameraState = "starting"
    last_error: str | None = None  # credentials already masked
    reconnects: int = 0  # failed attempts (open errors, drops) since the source started
    frames: int = 0  # frames yielded to the pipeline
    dropped: int = 0  # sampled frames dropped because the pipeline fell behind a live stream
    fps: float = 0.0  # measured rate of yielded frames (wall clock)
    width: int | None = None
    height: int | None = None
    last_frame_at: float | None = None  # epoch seconds
    retry_delay_s: float | None = None  # the backoff delay chosen for the pending retry
    next_retry_at: float | None = None  # epoch seconds
    _recent: deque[float] = field(default_factory=lambda: deque(maxlen=_FPS_WINDOW), repr=False)

    def frame_yielded(self, now: float, width: int, height: int) -> None:
        self.frames += 1
        self.last_frame_at = now
        self.width, self.height = width, height
        self._recent.append(now)
        span = self._recent[-1] - self._recent[0]
        self.fps = (len(self._recent) - 1) / span if span > 0 else 0.0

    def snapshot(self) -> CameraStatus:
        """An independent copy, safe to hand to another thread."""
        return replace(self, _recent=deque(self._recent, maxlen=_FPS_WINDOW))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the MQTT status payload)."""
        data = asdict(self)
        data.pop("_recent")
        data["fps"] = round(self.fps, 2)
        return data
