"""One camera as an iterator of sampled BGR frames, reconnecting on its own.

A reader thread opens the stream with PyAV, decodes every packet (H.264 needs them all), keeps
only the frames due at `detect_fps` and converts just those to BGR, because the colour
conversion costs more than the decode at the rates a detector can keep up with. It hands them
to `frames()` through a small queue. The thread is what lets `stop` end `frames()` within a
fraction of a second even while PyAV is blocked opening or reading a stalled camera (a
blocking FFmpeg call cannot be interrupted from Python; the thread leaves it when the socket
timeout fires).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal
from urllib.parse import unquote, urlsplit

import av
import av.container
import av.error
import numpy as np

from camd.config.schema import CameraConfig
from camd.redact import MASK, mask_url
from camd.sources.backoff import Backoff
from camd.sources.status import CameraState, CameraStatus
from camd.types import Frame

log = logging.getLogger(__name__)

LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "http", "https"})
# Consecutive undecodable packets before a stream counts as broken and is reopened.
MAX_BAD_PACKETS = 100
# A live stream keeps at most this many sampled frames waiting: when the pipeline falls behind,
# the oldest is dropped so detection stays on what the camera sees now.
LIVE_QUEUE_FRAMES = 2
FILE_QUEUE_FRAMES = 4
LIVE_ANALYZE_US = 1_000_000
# A file that cannot be read three times in a row will not get better by waiting (unlike a camera,
# which is retried forever): the source ends with the error in its status.
FILE_MAX_ATTEMPTS = 3
_POLL_S = 0.1  # how often waits look at the stop event
_TERMINAL: frozenset[CameraState] = frozenset({"ended", "stopped"})

StatusCallback = Callable[[CameraStatus], None]
_Outcome = Literal["eof", "stopped"]


class StreamError(Exception):
    """A stream that opened but cannot deliver video (no video track, only corrupt data)."""


@dataclass(frozen=True, slots=True)
class SourceTarget:
    """What to open: `location` goes to av.open; `shown` is safe to log."""

    location: str
    live: bool
    rtsp: bool
    shown: str


def resolve_target(url: str) -> SourceTarget:
    """A plain path or file:// URL is a file; rtsp/rtmp/http(s) are live streams."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = unquote(parts.path)
        return SourceTarget(location=path, live=False, rtsp=False, shown=path)
    if parts.scheme in LIVE_SCHEMES:
        return SourceTarget(
            location=url, live=True, rtsp=parts.scheme.startswith("rtsp"), shown=mask_url(url)
        )
    return SourceTarget(location=url, live=False, rtsp=False, shown=url)


class FrameSampler:
    """Keeps frames on a `1/fps` grid of stream time.

    A frame is due when its time reaches the next grid point, less a tolerance of a tenth of
    the interval so that rounded pts (0.19999 for 0.2) are not pushed to the next frame. After a
    gap (a stalled camera) the grid restarts at the next frame instead of bursting to catch up.
    """

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps
        self._tolerance = self.interval * 0.1
        self._due: float | None = None

    def take(self, t: float) -> bool:
        if self._due is not None and t < self._due - self._tolerance:
            return False
        if self._due is None or t - self._due > self.interval:
            self._due = t + self.interval
        else:
            self._due += self.interval
        return True


class StreamClock:
    """Stream time of each decoded frame, strictly increasing.

    Frames come out of the decoder in presentation order, but some containers (AVI with
    B-frames) attach timestamps in decode order. Like FFmpeg's best-effort timestamp, this
    trusts whichever of pts and dts has gone backwards less often, and steps by one frame
    interval when neither advances.
    """

    def __init__(self, time_base: Fraction | None, rate: float) -> None:
        self._time_base = time_base
        self._step = 1.0 / rate
        self._faulty_pts = 0
        self._faulty_dts = 0
        self._last_pts: int | None = None
        self._last_dts: int | None = None
        self._last: float | None = None

    def time_of(self, pts: int | None, dts: int | None) -> float:
        if pts is not None:
            if self._last_pts is not None and pts <= self._last_pts:
                self._faulty_pts += 1
            self._last_pts = pts
        if dts is not None:
            if self._last_dts is not None and dts <= self._last_dts:
                self._faulty_dts += 1
            self._last_dts = dts
        chosen = pts if pts is not None and (dts is None or self._faulty_pts <= self._faulty_dts) else dts
        t = float(chosen * self._time_base) if chosen is not None and self._time_base else None
        if t is None or (self._last is not None and t <= self._last):
            t = 0.0 if self._last is None else self._last + self._step
        self._last = t
        return t


class CameraSource:
    """Frames of one camera at `config.detect_fps`, for as long as `stop` is not set.

    `frames()` never raises for stream trouble: open errors, drops, corrupt data and the end of
    a live stream set the status to `reconnecting` and are retried with capped exponential
    backoff, forever for a camera and FILE_MAX_ATTEMPTS times in a row for a file. A file ends
    the iterator (state `ended`) when it is played out (unless `loop`) or given up on. `on_status` is
    called, from the reader thread, on every state change and on every scheduled retry; it
    gets a snapshot and should return quickly.
    """

    def __init__(
        self,
        name: str,
        config: CameraConfig,
        stop: threading.Event,
        on_status: StatusCallback | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._stop = stop
        self._on_status = on_status
        self._raw_url = config.url.get_secret_value()
        self.target = resolve_target(self._raw_url)
        self._status = CameraStatus(camera=name)
        self._lock = threading.Lock()
        self._closed = threading.Event()  # the consumer left frames(): the reader must end too
        size = LIVE_QUEUE_FRAMES if self.drops_when_behind else FILE_QUEUE_FRAMES
        self._queue: queue.Queue[_Sampled | None] = queue.Queue(maxsize=size)
        self._thread: threading.Thread | None = None
        self._reached_end = False  # the file played to its end (not looping)
        # File clock: frame timestamps are the wall-clock time of the first open plus media time,
        # so tracks see true motion speeds even when a file is decoded faster than real time.
        self._wall_base: float | None = None
        self._mono_base = 0.0
        self._media_offset = 0.0  # media seconds played in earlier loops
        self._last_timestamp = 0.0
        self._pass_frames = 0  # frames decoded since the last open
        self._file_failures = 0  # consecutive failed attempts on a file source

    @property
    def status(self) -> CameraStatus:
        with self._lock:
            return self._status.snapshot()

    @property
    def drops_when_behind(self) -> bool:
        """A live camera (or a file played in real time) cannot wait: late frames are dropped."""
        return self.target.live or self.config.realtime

    @property
    def clock_origin(self) -> float | None:
        """A file's frame timestamps are this wall-clock time plus media seconds (None before the
        first open); a live camera's are the wall-clock time each frame arrived."""
        return None if self.target.live else self._wall_base

    def frames(self) -> Iterator[Frame]:
        """Blocks and yields sampled frames; returns when stopped or when a file has ended."""
        if self._thread is not None:
            raise RuntimeError(f"camera {self.name}: frames() can be iterated only once per CameraSource")
        self._thread = threading.Thread(
            target=self._read_forever, name=f"camd-source-{self.name}", daemon=True
        )
        self._thread.start()
        index = 0
        try:
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if item is None:
                    if self._reached_end:
                        self._set_state("ended")
                    break
                if self._stop.is_set():
                    break
                frame = Frame(
                    camera=self.name, index=index, timestamp=item.timestamp, image=item.image,
                    pts_seconds=item.pts,
                )
                index += 1
                with self._lock:
                    self._status.frame_yielded(time.time(), frame.width, frame.height)
                yield frame
        finally:
            self._closed.set()
            self._set_state("stopped")  # no-op when the file already ended

    # --- reader thread -------------------------------------------------------------------

    def _halted(self) -> bool:
        return self._stop.is_set() or self._closed.is_set()

    def _wait(self, seconds: float) -> bool:
        """Sleep, waking early when halted. True when halted."""
        deadline = time.monotonic() + seconds
        while not self._halted():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._stop.wait(min(remaining, _POLL_S))
        return True

    def _read_forever(self) -> None:
        backoff = Backoff(self.config.reconnect_initial_s, self.config.reconnect_max_s)
        try:
            while not self._halted():
                try:
                    container = self._open()
                except Exception as exc:  # any open failure is retried, never raised
                    if self._retry(f"cannot open {self.target.shown}: {self._describe(exc)}", backoff):
                        continue
                    break
                self._pass_frames = 0
                try:
                    outcome, delivered = self._pump(container, backoff)
                except Exception as exc:
                    if self.target.live or self._pass_frames == 0:
                        if self._retry(f"stream {self.target.shown} failed: {self._describe(exc)}", backoff):
                            continue
                        break
                    # Replaying a damaged file would fail at the same place: play what is readable.
                    log.warning("camera %s: file %s unreadable after %d frames (%s); treating it as ended",
                                self.name, self.target.shown, self._pass_frames, self._describe(exc))
                    outcome, delivered = "eof", True
                finally:
                    _close_quietly(container)
                if outcome == "stopped":
                    break
                if self.target.live:
                    if self._retry(f"stream {self.target.shown} ended", backoff):
                        continue
                    break
                if not delivered:  # guards `loop` against spinning on a file with no usable frames
                    if self._retry(f"file {self.target.shown} has no decodable video frames", backoff):
                        continue
                    break
                if not self.config.loop:
                    # "ended" is announced by the consumer once it has taken every queued frame,
                    # so the final status counts them all.
                    self._reached_end = True
                    break
        except Exception:  # a bug here must not leave the consumer waiting forever
            log.exception("camera %s: reader failed", self.name)
        finally:
            if not self._reached_end:
                self._set_state("stopped")
            self._finish_queue()

    def _open(self) -> av.container.InputContainer:
        return open_container(self.target, self.config)

    def _pump(self, container: av.container.InputContainer, backoff: Backoff) -> tuple[_Outcome, bool]:
        if not container.streams.video:
            raise StreamError("no video stream")
        stream = container.streams.video[0]
        # Frame threads add a few frames of latency: worth it for files, not for a live camera.
        stream.thread_type = "SLICE" if self.target.live else "AUTO"
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        sampler = FrameSampler(self.config.detect_fps)
        clock = StreamClock(stream.time_base, rate)
        first_time: float | None = None
        media_time = 0.0
        decoded = 0
        bad_packets = 0
        if self._wall_base is None:
            self._wall_base, self._mono_base = time.time(), time.monotonic()
        for packet in container.demux(stream):
            if self._halted():
                return "stopped", decoded > 0
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as exc:
                bad_packets += 1
                if bad_packets > MAX_BAD_PACKETS:
                    raise StreamError(f"{bad_packets} undecodable packets in a row") from exc
                continue
            bad_packets = 0
            for frame in frames:
                if decoded == 0:
                    self._went_online(frame.width, frame.height)
                    backoff.connected()
                stream_time = clock.time_of(frame.pts, frame.dts)
                decoded += 1
                self._pass_frames = decoded
                if first_time is None:
                    first_time = stream_time
                media_time = max(media_time, stream_time - first_time)
                if not sampler.take(stream_time):
                    continue  # not due: skip the colour conversion entirely
                if self.target.live:
                    timestamp = time.time()
                else:
                    elapsed = self._media_offset + stream_time - first_time
                    if self.config.realtime and self._wait(self._mono_base + elapsed - time.monotonic()):
                        return "stopped", True
                    timestamp = self._wall_base + elapsed
                timestamp = max(timestamp, self._last_timestamp + 1e-6)
                self._last_timestamp = timestamp
                if not self._deliver(_Sampled(timestamp, frame.to_ndarray(format="bgr24"), stream_time)):
                    return "stopped", True
        self._media_offset += media_time + 1.0 / rate  # the next loop continues the file clock
        return "eof", decoded > 0

    def _deliver(self, item: _Sampled) -> bool:
        """Queue a frame. False when halted while waiting for room."""
        if self.drops_when_behind:
            while True:
                try:
                    self._queue.put_nowait(item)
                    return True
                except queue.Full:
                    try:
                        self._queue.get_nowait()
                        with self._lock:
                            self._status.dropped += 1
                    except queue.Empty:
                        pass
        while not self._halted():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _finish_queue(self) -> None:
        """Wake the consumer with the end marker, dropping frames it will not read anyway."""
        while True:
            try:
                self._queue.put_nowait(None)
                return
            except queue.Full:
                if not self._halted():
                    time.sleep(_POLL_S)  # the consumer is still reading: let it drain
                    continue
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()

    # --- status ---------------------------------------------------------------------------

    def _went_online(self, width: int, height: int) -> None:
        self._file_failures = 0
        with self._lock:
            if self._status.state in _TERMINAL:
                return
            self._status.state = "online"
            self._status.retry_delay_s = None
            self._status.next_retry_at = None
            self._status.width, self._status.height = width, height
            snapshot = self._status.snapshot()
        log.info("camera %s: online, %s (%dx%d)", self.name, self.target.shown, width, height)
        self._notify(snapshot)

    def _retry(self, error: str, backoff: Backoff) -> bool:
        """Record a failure and sleep the backoff delay. False when halted meanwhile."""
        if self._halted():
            return False
        if not self.target.live:
            self._file_failures += 1
            if self._file_failures >= FILE_MAX_ATTEMPTS:
                self._give_up(error)
                return False
        delay = backoff.next_delay()
        with self._lock:
            if self._status.state in _TERMINAL:
                return False
            first = self._status.state != "reconnecting"
            self._status.state = "reconnecting"
            self._status.last_error = error
            self._status.reconnects += 1
            self._status.retry_delay_s = delay
            self._status.next_retry_at = time.time() + delay
            snapshot = self._status.snapshot()
        # Once per state change at warning; the retries of a camera that stays down go to debug.
        log.log(logging.WARNING if first else logging.DEBUG,
                "camera %s: %s; retrying in %.1f s", self.name, error, delay)
        self._notify(snapshot)
        return not self._wait(delay)

    def _give_up(self, error: str) -> None:
        with self._lock:
            if self._status.state in _TERMINAL:
                return
            self._status.state = "ended"
            self._status.last_error = error
            self._status.retry_delay_s = self._status.next_retry_at = None
            snapshot = self._status.snapshot()
        log.error("camera %s: %s; giving up after %d attempts", self.name, error, FILE_MAX_ATTEMPTS)
        self._notify(snapshot)

    def _set_state(self, state: CameraState) -> None:
        with self._lock:
            if self._status.state == state or self._status.state in _TERMINAL:
                return
            self._status.state = state
            self._status.next_retry_at = None
            self._status.retry_delay_s = None
            snapshot = self._status.snapshot()
        log.info("camera %s: %s", self.name, state)
        self._notify(snapshot)

    def _notify(self, snapshot: CameraStatus) -> None:
        if self._on_status is None:
            return
        try:
            self._on_status(snapshot)
        except Exception:  # a broken listener must not take the camera down
            log.exception("camera %s: status callback failed", self.name)

    def _describe(self, exc: BaseException) -> str:
        return describe_error(exc, self._raw_url, self.target.shown)


def describe_error(exc: BaseException, raw_url: str, shown: str) -> str:
    """The error text with the URL's password masked (FFmpeg errors quote the full URL)."""
    text = f"{type(exc).__name__}: {exc}"
    text = text.replace(raw_url, shown)
    password = urlsplit(raw_url).password
    if password:
        text = text.replace(password, MASK).replace(unquote(password), MASK)
    return text


def open_container(target: SourceTarget, config: CameraConfig) -> av.container.InputContainer:
    """av.open with the camera's timeouts and transport; every blocking call can time out."""
    timeout_us = str(int(config.open_timeout_s * 1_000_000))
    options: dict[str, str] = {}
    if target.live:
        # The stream's parameters come from the SDP / first keyframe; probing FFmpeg's default
        # 5 s only delays the first frame.
        options["analyzeduration"] = str(LIVE_ANALYZE_US)
    if target.rtsp:
        # `timeout` is the RTSP socket I/O timeout in microseconds (FFmpeg >= 5).
        options |= {"rtsp_transport": config.rtsp_transport, "timeout": timeout_us}
    elif target.live:
        options["rw_timeout"] = timeout_us
    # PyAV's own (open, read) timeout interrupts any blocking FFmpeg call, whatever the protocol.
    timeout = (config.open_timeout_s, config.open_timeout_s)
    return av.open(target.location, mode="r", options=options, timeout=timeout)


@dataclass(frozen=True, slots=True)
class _Sampled:
    timestamp: float
    image: np.ndarray  # BGR
    pts: float


def _close_quietly(container: av.container.InputContainer) -> None:
    try:
        container.close()
    except Exception as exc:  # closing a broken stream may fail again; nothing left to save
        log.debug("closing a failed container: %s", exc)
