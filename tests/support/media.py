"""Real H.264 clips, generated with PyAV (libx264) into temporary folders.

- `make_clip`: any clip from a draw(index) callable; short GOP and no B-frames, so an RTSP
  client that joins mid-stream gets a keyframe quickly.
- Numbered clips: every frame carries its own index as a row of black/white blocks that
  survives compression (`read_index`), so a test can tell exactly which frames it received.
- `WalkerScene`: filled rectangles moving on straight, known paths over a static textured
  background, with the ground-truth box of every walker in every frame (tracker tests).
- Damaged copies: `truncated_copy`, `corrupted_copy`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from camd.types import Box

Draw = Callable[[int], np.ndarray]  # frame index -> BGR uint8 image of the clip's size

INDEX_BITS = 10  # up to 1023 frames
INDEX_BLOCK = 12  # pixels per bit; the code needs a frame at least 120 px wide


def _encoder_options(gop: int) -> dict[str, str]:
    return {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
    }


def _add_video_stream(
    container: av.container.OutputContainer, fps: float, size: tuple[int, int], gop: int
) -> av.VideoStream:
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                  options=_encoder_options(gop))
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    return stream


def _encode(container: av.container.OutputContainer, stream: av.VideoStream, image: np.ndarray,
            pts: int) -> None:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
    frame.pts = pts
    container.mux(stream.encode(frame))


def make_clip(
    path: Path,
    frames: int,
    fps: float = 10.0,
    size: tuple[int, int] = (160, 120),
    draw: Draw | None = None,
    gop: int = 10,
) -> Path:
    """Encode `frames` frames of `draw(index)` (default: numbered frames) as H.264 into `path`.

    The container follows the suffix (.mp4, .mkv, .ts, .avi). size is (width, height), even.
    """
    draw = draw or (lambda index: numbered_frame(index, size))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = _add_video_stream(container, fps, size, gop)
        for index in range(frames):
            image = draw(index)
            if image.shape != (size[1], size[0], 3) or image.dtype != np.uint8:
                want = (size[1], size[0], 3)
                raise ValueError(f"draw({index}) gave {image.shape} {image.dtype}, want {want} uint8")
            _encode(container, stream, image, index)
        container.mux(stream.encode(None))
    return path


def make_resolution_change_clip(path: Path, sizes: Sequence[tuple[int, int]], frames_each: int,
                                fps: float = 10.0) -> Path:
    """An MPEG-TS clip whose resolution changes mid-stream (one encoder per size, continuous pts),
    as a camera does when its stream profile is changed while clients are connected."""
    with av.open(str(path), mode="w", format="mpegts") as container:
        first = sizes[0]
        stream = _add_video_stream(container, fps, first, gop=5)
        pts = 0
        for size in sizes:
            encoder = av.CodecContext.create("libx264", "w")
            encoder.width, encoder.height = size
            encoder.pix_fmt = "yuv420p"
            encoder.time_base = Fraction(1, 1) / stream.codec_context.framerate
            encoder.framerate = stream.codec_context.framerate
            encoder.options = _encoder_options(5)
            for _ in range(frames_each):
                frame = av.VideoFrame.from_ndarray(numbered_frame(pts, size), format="bgr24")
                frame.pts = pts
                frame.time_base = encoder.time_base
                pts += 1
                for packet in encoder.encode(frame):
                    _mux_foreign(container, stream, packet)
            for packet in encoder.encode(None):
                _mux_foreign(container, stream, packet)
    return path


def _mux_foreign(container: av.container.OutputContainer, stream: av.VideoStream, packet: av.Packet) -> None:
    packet.stream = stream
    container.mux(packet)


# --- numbered frames -----------------------------------------------------------------------


def numbered_frame(index: int, size: tuple[int, int]) -> np.ndarray:
    """A frame with a moving gradient and its index coded in the top rows."""
    width, height = size
    if width < INDEX_BITS * INDEX_BLOCK or height < 2 * INDEX_BLOCK:
        raise ValueError(f"numbered frames need at least {INDEX_BITS * INDEX_BLOCK}x{2 * INDEX_BLOCK} pixels")
    xs = np.arange(width, dtype=np.int32)[None, :]
    ys = np.arange(height, dtype=np.int32)[:, None]
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[..., 0] = ((xs + 4 * index) % 256).astype(np.uint8)
    image[..., 1] = ((ys * 2 + index) % 256).astype(np.uint8)
    image[..., 2] = 128
    image[: 2 * INDEX_BLOCK] = 128  # quiet band around the code
    for bit in range(INDEX_BITS):
        value = 255 if (index >> bit) & 1 else 0
        x = bit * INDEX_BLOCK
        image[2:INDEX_BLOCK + 2, x + 1 : x + INDEX_BLOCK - 1] = value
    return image


def read_index(image: np.ndarray) -> int:
    """The index `numbered_frame` coded into a decoded (lossy) frame of the coded size."""
    index = 0
    y = INDEX_BLOCK // 2 + 2
    for bit in range(INDEX_BITS):
        x = bit * INDEX_BLOCK + INDEX_BLOCK // 2
        if image[y - 2 : y + 3, x - 2 : x + 3].mean() > 128:
            index |= 1 << bit
    return index


# --- walkers: known motion -------------------------------------------------------------------


@dataclass(frozen=True)
class Walker:
    """A filled rectangle moving at constant speed from `start` to `end` (box centres, pixels)
    over the clip's frames."""

    name: str
    start: tuple[float, float]
    end: tuple[float, float]
    size: tuple[int, int]  # width, height
    color: tuple[int, int, int]  # BGR

    def box_at(self, progress: float) -> Box:
        """Ground-truth (x1, y1, x2, y2) at progress 0..1, in whole pixels as drawn."""
        cx = self.start[0] + (self.end[0] - self.start[0]) * progress
        cy = self.start[1] + (self.end[1] - self.start[1]) * progress
        x1, y1 = round(cx - self.size[0] / 2), round(cy - self.size[1] / 2)
        return (float(x1), float(y1), float(x1 + self.size[0]), float(y1 + self.size[1]))


@dataclass(frozen=True)
class WalkerScene:
    width: int
    height: int
    fps: float
    frames: int
    walkers: tuple[Walker, ...]
    seed: int = 7

    def progress(self, index: int) -> float:
        return index / (self.frames - 1) if self.frames > 1 else 0.0

    def boxes(self, index: int) -> dict[str, Box]:
        """Ground truth of frame `index`: walker name -> box (clipped to nothing; paths stay inside)."""
        return {w.name: w.box_at(self.progress(index)) for w in self.walkers}

    def background(self) -> np.ndarray:
        """Static texture: coarse random blocks plus fine noise, so the frame is not flat and only
        the walkers move."""
        rng = np.random.default_rng(self.seed)
        coarse = rng.integers(60, 190, size=(self.height // 8 + 1, self.width // 8 + 1, 3), dtype=np.uint8)
        image = np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)[: self.height, : self.width]
        fine = rng.integers(-20, 21, size=image.shape, dtype=np.int16)
        return np.clip(image.astype(np.int16) + fine, 0, 255).astype(np.uint8)

    def render(self, index: int, background: np.ndarray | None = None) -> np.ndarray:
        image = (self.background() if background is None else background).copy()
        for walker in self.walkers:
            x1, y1, x2, y2 = (int(v) for v in walker.box_at(self.progress(index)))
            image[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = walker.color
        return image


def default_walker_scene() -> WalkerScene:
    """Two walkers on separate horizontal lanes, moving in opposite directions (no overlap)."""
    return WalkerScene(
        width=320, height=240, fps=10.0, frames=60,
        walkers=(
            Walker("red", start=(40, 70), end=(280, 70), size=(30, 70), color=(40, 40, 220)),
            Walker("blue", start=(270, 175), end=(60, 165), size=(26, 60), color=(220, 60, 30)),
        ),
    )


@dataclass(frozen=True)
class WalkerClip:
    path: Path
    scene: WalkerScene


def make_walker_clip(path: Path, scene: WalkerScene, gop: int = 10) -> WalkerClip:
    background = scene.background()
    make_clip(path, scene.frames, scene.fps, (scene.width, scene.height),
              draw=lambda index: scene.render(index, background), gop=gop)
    return WalkerClip(path, scene)


@dataclass(frozen=True)
class PhotoWalkers:
    """Two real people (cut from the ultralytics bus photo) walking known straight paths in an H.264
    clip: what the real detector finds and the flow can follow (real texture, not flat colour)."""

    path: Path
    frames: int
    fps: float
    people: dict[str, np.ndarray]
    lanes: dict[str, tuple[tuple[int, int], tuple[int, int]]]  # top-left start, end

    def top_left(self, name: str, index: int) -> tuple[int, int]:
        (x0, y0), (x1, y1) = self.lanes[name]
        p = index / (self.frames - 1)
        return round(x0 + (x1 - x0) * p), round(y0 + (y1 - y0) * p)

    def truth(self, name: str, index: int) -> Box:
        x, y = self.top_left(name, index)
        h, w = self.people[name].shape[:2]
        return (float(x), float(y), float(x + w), float(y + h))


def make_photo_walkers(
    models_dir: Path, path: Path, frames: int = 50, fps: float = 10.0, enters: dict[str, int] | None = None
) -> PhotoWalkers:
    """`enters`: the frame from which a walker is in the picture (default: all from the first)."""
    photo = cv2.imread(str(models_dir / "sample_photos" / "bus.jpg"))
    people = {  # hand-checked boxes of two full-length people in bus.jpg, scaled to 45%
        "beige": cv2.resize(photo[400:898, 52:243], None, fx=0.45, fy=0.45),
        "black": cv2.resize(photo[407:857, 225:343], None, fx=0.45, fy=0.45),
    }
    width, height = 640, 480
    rng = np.random.default_rng(3)
    background = cv2.GaussianBlur(rng.integers(90, 170, (height, width, 3), dtype=np.uint8), (0, 0), 3)
    walkers = PhotoWalkers(path, frames, fps, people, {"beige": ((10, 20), (430, 40)),
                                                       "black": ((560, 260), (120, 250))})

    def draw(index: int) -> np.ndarray:
        image = background.copy()
        for name, crop in people.items():
            if index < (enters or {}).get(name, 0):
                continue
            x, y = walkers.top_left(name, index)
            image[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
        return image

    make_clip(path, frames, fps, (width, height), draw=draw, gop=10)
    return walkers


# --- damaged copies ------------------------------------------------------------------------


def truncated_copy(source: Path, target: Path, keep: float = 0.5) -> Path:
    """The first `keep` fraction of the bytes, as a recording cut off by a full disk."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def corrupted_copy(source: Path, target: Path, fraction: float = 0.02, seed: int = 1,
                   region: tuple[float, float] = (0.2, 0.7)) -> Path:
    """Random bytes overwritten inside `region` (fractions of the file): the headers at the start
    and an MP4's index at the end stay intact, the video payload between them is damaged."""
    data = bytearray(source.read_bytes())
    rng = random.Random(seed)
    start, end = int(len(data) * region[0]), int(len(data) * region[1])
    for _ in range(int(len(data) * fraction)):
        data[rng.randrange(start, end)] = rng.randrange(256)
    target.write_bytes(bytes(data))
    return target


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide folder for generated clips."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def numbered_clip(media_dir: Path) -> Path:
    """40 numbered frames, 160x120, 10 fps, keyframe every 10 frames, MP4."""
    return make_clip(media_dir / "numbered.mp4", frames=40, fps=10.0, size=(160, 120), gop=10)


@pytest.fixture(scope="session")
def stream_clip(media_dir: Path) -> Path:
    """30 s of numbered frames (300 at 10 fps), keyframe every 5 frames: for RTSP serving."""
    return make_clip(media_dir / "stream.mp4", frames=300, fps=10.0, size=(160, 120), gop=5)


@pytest.fixture(scope="session")
def walkers_clip(media_dir: Path) -> WalkerClip:
    """The default two-walker scene as an H.264 MP4, with its ground truth in `.scene`."""
    return make_walker_clip(media_dir / "walkers.mp4", default_walker_scene())


def transcode(source: Path, target: Path, gop: int = 10, max_frames: int | None = None,
              size: tuple[int, int] | None = None) -> Path:
    """Re-encode a real clip as H.264 with a short GOP, so an RTSP client joining mid-stream
    decodes within a fraction of a second (real camera footage, camera-like stream). `size`
    (width, height, even) rescales it: one clip as a camera's main stream and its substream."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as reader, av.open(str(target), mode="w") as writer:
        video = reader.streams.video[0]
        fps = float(video.average_rate or 10)
        out_size = size or (video.codec_context.width, video.codec_context.height)
        stream = _add_video_stream(writer, fps, out_size, gop)
        for index, frame in enumerate(reader.decode(video)):
            if max_frames is not None and index >= max_frames:
                break
            image = frame.to_ndarray(format="bgr24")
            if size is not None:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            _encode(writer, stream, image, index)
        writer.mux(stream.encode(None))
    return target


def clip_span(clip: Path, out: Path, start_s: float = 0.0, end_s: float | None = None) -> Path:
    """The frames of `clip` from start_s to end_s (None: its end), re-encoded to `out` (a test-local
    file, never committed): a part of a real clip played as a camera."""
    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    index = 0
    while end_s is None or index / fps < end_s:
        ok, frame = capture.read()
        if not ok:
            break
        if index / fps >= start_s:
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
            writer.write(frame)
        index += 1
    capture.release()
    assert writer is not None, f"{clip}: no frames between {start_s} s and {end_s} s"
    writer.release()
    return out
