"""The camera's main (full-resolution) stream, beside a low-resolution detect substream.

Detection and tracking run on the substream; identity wants crops with more pixels, so it asks
for the main-stream frame nearest in time to the substream frame it is looking at. The main
stream is demuxed all the time (a live camera must be read or it stalls) but decoded only on
demand: its packets since the last keyframe are kept, and a request decodes just the packets
up to the requested time, continuing where the last request stopped. While nobody is in the
picture, no main-stream frame is decoded or converted at all.

A live camera's packets are read by a thread and stamped with their arrival time (the clock the
substream's frames use); a file is read in the caller's thread, as far as the requested time,
and stamped with the same media clock as the substream file.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction

import av
import av.container
import numpy as np

from camd.config.schema import CameraConfig
from camd.geometry import scale_box
from camd.sources.backoff import Backoff
from camd.sources.stream import describe_error, open_container, resolve_target
from camd.types import Frame, TrackedObject

log = logging.getLogger(__name__)

# A main frame further than this from the substream frame is the wrong picture: use the substream.
MAX_SKEW_S = 0.5
# Packets kept from the last keyframe on. A camera's GOP is 1-4 s (15-120 packets); a stream with
# no keyframe for longer than this is decoded from the next keyframe instead.
MAX_GOP_PACKETS = 600


@dataclass
class MainStreamStats:
    requests: int = 0  # frames identity asked for
    served: int = 0  # ... answered with a main-stream frame (the rest fall back to the substream)
    packets: int = 0  # main-stream packets read
    decoded: int = 0  # main-stream frames decoded
    converted: int = 0  # main-stream frames converted to BGR
    reopens: int = 0


@dataclass
class _Gop:
    """The packets from one keyframe to the next."""

    number: int
    start: float  # the keyframe's time
    packets: list[tuple[float, av.Packet]]


class OnDemandDecoder:
    """Packets of one video stream from its last two keyframes, decoded only as far as asked.

    Two GOPs, because a request for a time just before a keyframe arrives while (or after) that
    keyframe is read. A request continues from where the decoder stopped when it can, and starts
    afresh (flushed) at the keyframe before the requested time otherwise.
    """

    def __init__(self, stream: av.VideoStream, stats: MainStreamStats) -> None:
        self._codec = av.CodecContext.create(stream.codec_context.name, "r")
        if stream.codec_context.extradata:
            self._codec.extradata = stream.codec_context.extradata
        self._stats = stats
        self._gops: deque[_Gop] = deque(maxlen=2)
        self._numbers = 0
        self._at: tuple[int, int] | None = None  # (GOP number, packets of it fed to the decoder)
        self._times: dict[int, float] = {}  # pts -> time, to stamp the frames the decoder returns
        self._recent: deque[tuple[float, av.VideoFrame]] = deque(maxlen=3)
        self.latest_time: float | None = None  # newest packet time seen
        self._warned_gop = False

    def add(self, t: float, packet: av.Packet) -> None:
        self.latest_time = t if self.latest_time is None else max(self.latest_time, t)
        if packet.is_keyframe:
            self._numbers += 1
            self._gops.append(_Gop(self._numbers, t, []))
        elif not self._gops:
            return  # no keyframe seen yet: nothing here can be decoded
        gop = self._gops[-1]
        if len(gop.packets) >= MAX_GOP_PACKETS:
            if not self._warned_gop:
                self._warned_gop = True
                log.warning("main stream: no keyframe in %d packets; main-stream crops wait for the next "
                            "one (set the camera's keyframe interval, 'I-frame interval', to 1-4 s)",
                            MAX_GOP_PACKETS)
            self._gops.clear()
            return
        gop.packets.append((t, packet))

    def frame_near(self, t: float) -> tuple[float, av.VideoFrame] | None:
        """Decode forward until a frame at or after `t` (or the newest packet); the nearest frame."""
        if not self._gops:
            return None
        before = [gop for gop in self._gops if gop.start <= t]
        target = before[-1] if before else self._gops[0]
        self._position_at(target)
        assert self._at is not None
        gops = [gop for gop in self._gops if gop.number >= target.number]
        for gop in gops:
            if gop.number != self._at[0]:  # the decoder ran to the end of the previous GOP: go on
                self._at = (gop.number, 0)
            while self._at[1] < len(gop.packets) and not (self._recent and self._recent[-1][0] >= t):
                packet_time, packet = gop.packets[self._at[1]]
                self._at = (gop.number, self._at[1] + 1)
                self._decode(packet_time, packet)
            if self._recent and self._recent[-1][0] >= t:
                break
        if not self._recent:
            return None
        return min(self._recent, key=lambda item: abs(item[0] - t))

    def _position_at(self, target: _Gop) -> None:
        """Keep the decoder's place when it is inside `target` or just finished the GOP before."""
        if self._at is not None:
            number, fed = self._at
            if number == target.number:
                return
            previous = next((g for g in self._gops if g.number == number), None)
            if number == target.number - 1 and previous is not None and fed == len(previous.packets):
                return
        self._codec.flush_buffers()
        self._recent.clear()
        self._times.clear()
        self._at = (target.number, 0)

    def _decode(self, packet_time: float, packet: av.Packet) -> None:
        if packet.pts is not None:
            self._times[packet.pts] = packet_time
        try:
            frames = self._codec.decode(packet)
        except av.error.InvalidDataError:
            return  # a damaged packet: the next keyframe repairs the picture
        for frame in frames:
            self._stats.decoded += 1
            frame_time = packet_time if frame.pts is None else self._times.pop(frame.pts, packet_time)
            self._recent.append((frame_time, frame))


class MainStream:
    """Full-resolution frames of one camera on request: `image_near(timestamp)`.

    `origin()` gives the substream file's clock origin (its timestamps are origin + media
    seconds); live cameras need none. Never raises for stream trouble: a request that cannot be
    served returns None and the caller uses the substream frame.
    """

    def __init__(
        self,
        name: str,
        config: CameraConfig,
        stop: threading.Event,
        origin: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.name = name
        self.config = config
        self._raw_url = config.url.get_secret_value()
        self.target = resolve_target(self._raw_url)
        self.stats = MainStreamStats()
        self._stop = stop
        self._origin = origin
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._decoder: OnDemandDecoder | None = None
        self._cached: tuple[float, np.ndarray] | None = None
        self._thread: threading.Thread | None = None
        # File reading state (in the caller's thread).
        self._container: av.container.InputContainer | None = None
        self._packets: Iterator[av.Packet] | None = None
        self._time_base: Fraction | None = None
        self._first_pts: int | None = None
        self._media_offset = 0.0
        self._media_end = 0.0
        self._file_done = False
        self._failures = 0

    def start(self) -> MainStream:
        if self.target.live and self._thread is None:
            name = f"camd-main-{self.name}"
            self._thread = threading.Thread(target=self._read_live, name=name, daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._close_container()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def image_near(self, timestamp: float) -> np.ndarray | None:
        """The BGR main-stream frame nearest to `timestamp` (the substream frame's), or None."""
        self.stats.requests += 1
        with self._lock:
            if not self.target.live:
                self._read_file_until(timestamp)
            if self._decoder is None:
                return None
            found = self._decoder.frame_near(timestamp)
            if found is None or abs(found[0] - timestamp) > MAX_SKEW_S:
                return None
            frame_time, frame = found
            if self._cached is None or self._cached[0] != frame_time:
                self._cached = (frame_time, frame.to_ndarray(format="bgr24"))
                self.stats.converted += 1
            self.stats.served += 1
            return self._cached[1]

    def identity_view(
        self, frame: Frame, tracked: list[TrackedObject]
    ) -> tuple[Frame, list[TrackedObject]] | None:
        """The main-stream frame nearest to a substream `frame`, with the tracked objects' boxes scaled
        to it: what identity crops from. None when no main frame is at hand (identity then uses the
        substream frame)."""
        image = self.image_near(frame.timestamp)
        if image is None:
            return None
        sx, sy = image.shape[1] / frame.width, image.shape[0] / frame.height
        main = Frame(frame.camera, frame.index, frame.timestamp, image, frame.pts_seconds)
        scaled = [
            TrackedObject(obj.track_id, replace(obj.detection, box=scale_box(obj.detection.box, sx, sy)))
            for obj in tracked
        ]
        return main, scaled

    # -- a file, read as far as asked ----------------------------------------------------------

    def _read_file_until(self, timestamp: float) -> None:
        origin = self._origin()
        if origin is None or self._file_done or self._closed.is_set():
            return
        target_media = timestamp - origin
        while self._decoder is None or (self._decoder.latest_time or -1.0) < timestamp + MAX_SKEW_S / 2:
            if self._packets is None and not self._open_file():
                return
            assert self._packets is not None
            packet = next(self._packets, None)
            if packet is None:  # end of file: loop like the substream does, or stop reading
                self._close_container()
                self._media_offset = self._media_end
                if not self.config.loop:
                    self._file_done = True
                    return
                if target_media < self._media_offset:
                    return
                continue
            if packet.size == 0 or packet.pts is None:
                continue
            if self._first_pts is None:
                self._first_pts = packet.pts
            media = self._media_offset + float((packet.pts - self._first_pts) * (self._time_base or 0))
            self._media_end = max(self._media_end, media + 1.0 / max(self.config.detect_fps, 1.0))
            self.stats.packets += 1
            assert self._decoder is not None
            self._decoder.add(origin + media, packet)

    def _open_file(self) -> bool:
        try:
            container = open_container(self.target, self.config)
            stream = container.streams.video[0]
        except Exception as exc:  # a missing or broken main file: crops come from the substream
            self._failures += 1
            if self._failures == 1:
                log.warning("camera %s: main stream %s unusable (%s); identity uses the detect stream",
                            self.name, self.target.shown, self._describe(exc))
            self._file_done = True
            return False
        self._container = container
        self._time_base = stream.time_base
        self._first_pts = None
        self._decoder = OnDemandDecoder(stream, self.stats)
        self._packets = container.demux(stream)
        return True

    def _close_container(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        self._container = None
        self._packets = None

    # -- a live camera, read all the time --------------------------------------------------------

    def _halted(self) -> bool:
        return self._stop.is_set() or self._closed.is_set()

    def _read_live(self) -> None:
        backoff = Backoff(self.config.reconnect_initial_s, self.config.reconnect_max_s)
        while not self._halted():
            try:
                container = open_container(self.target, self.config)
            except Exception as exc:
                self._live_trouble(f"cannot open: {self._describe(exc)}", backoff)
                continue
            try:
                stream = container.streams.video[0]
                with self._lock:
                    self._decoder = OnDemandDecoder(stream, self.stats)
                for packet in container.demux(stream):
                    if self._halted():
                        break
                    if packet.size == 0:
                        continue
                    backoff.connected()
                    with self._lock:
                        self.stats.packets += 1
                        assert self._decoder is not None
                        self._decoder.add(time.time(), packet)
                else:
                    self._live_trouble("stream ended", backoff)
            except Exception as exc:
                self._live_trouble(f"failed: {self._describe(exc)}", backoff)
            finally:
                with contextlib.suppress(Exception):
                    container.close()

    def _describe(self, exc: BaseException) -> str:
        return describe_error(exc, self._raw_url, self.target.shown)

    def _live_trouble(self, what: str, backoff: Backoff) -> None:
        if self._halted():
            return
        self.stats.reopens += 1
        delay = backoff.next_delay()
        log.log(logging.WARNING if self.stats.reopens == 1 else logging.DEBUG,
                "camera %s: main stream %s %s; identity uses the detect stream meanwhile, retrying in %.1f s",
                self.name, self.target.shown, what, delay)
        deadline = time.monotonic() + delay
        while not self._halted() and time.monotonic() < deadline:
            self._stop.wait(0.1)
