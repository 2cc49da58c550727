"""A clip -> tracked frames, the way the daemon sees a camera.

One loop for everything that reads a video file outside the daemon: enrollment from a clip
(camd/identity/enroll.py), the evaluation harness (camd/eval/reid.py) and the bench's detector probe
(camd/bench.py). Frames come from the daemon's decoder (camd/sources: PyAV, sampled at detect_fps);
`daemon_view` adds the daemon's detector, object filters (labels, min_area) and tracker, so that what
enrollment lists is what the daemon would have tracked on that footage.

Frame timestamps here are seconds into the clip (the daemon's are wall-clock seconds: the same steps).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av

from camd.config import CameraConfig, Config, ObjectsConfig
from camd.sources.stream import CameraSource, resolve_target
from camd.types import Detection, Frame, TrackedObject
from camd.vision.detector import Detector, create_detector, filter_detections
from camd.vision.scenecut import SceneCuts
from camd.vision.tracker import ObjectTracker

MAX_FPS = 30.0  # a camera's detect_fps bound: higher-rate clips are sampled down to it
Progress = Callable[[int, int], None]  # (frames done, frames expected)


class ClipError(ValueError):
    """A clip that cannot be read; the message names it and says why."""


@dataclass(frozen=True, slots=True)
class ClipInfo:
    fps: float  # the video's native frame rate
    seconds: float | None  # its length, when the container says


@dataclass(frozen=True, slots=True)
class TrackedFrame:
    """One sampled frame of a clip, what the detector kept of it, and the tracker's objects."""

    frame: Frame  # timestamp: seconds into the clip
    detections: tuple[Detection, ...]  # after the object filters: the tracker's input
    tracked: tuple[TrackedObject, ...]


def probe(clip: Path | str) -> ClipInfo:
    """The clip's rate and length, or ClipError when it is missing or not a video."""
    clip = Path(clip)
    if not clip.is_file():
        raise ClipError(f"{clip}: no such video file")
    try:
        with av.open(str(clip)) as container:
            if not container.streams.video:
                raise ClipError(f"{clip}: unreadable (no video stream in it)")
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else 25.0
            seconds = container.duration / 1_000_000 if container.duration else None
    except av.error.FFmpegError as exc:
        raise ClipError(f"{clip}: unreadable (not a video camd can decode: {exc})") from None
    return ClipInfo(fps, seconds)


def clip_frames(
    clip: Path | str,
    detect_fps: float | None = None,
    start_s: float = 0.0,
    end_s: float | None = None,
    max_frames: int | None = None,
    progress: Progress | None = None,
) -> Iterator[Frame]:
    """The clip's frames from start_s to end_s, sampled at detect_fps (None: every frame, up to
    MAX_FPS) by the daemon's decoder; at most max_frames of them (counted from the clip's start).
    `clip` may also be a stream URL (the bench measures a camera): then nothing is probed first."""
    live = resolve_target(str(clip)).live
    info = ClipInfo(detect_fps or MAX_FPS, None) if live else probe(clip)
    fps = min(detect_fps or info.fps, info.fps, MAX_FPS)
    span = info.seconds
    if end_s is not None:
        span = end_s if span is None else min(span, end_s)
    expected = max(1, math.ceil(span * fps)) if span else 0
    stop = threading.Event()
    source = CameraSource(Path(str(clip)).name or "clip", CameraConfig(url=str(clip), detect_fps=fps), stop)
    first: float | None = None
    index = 0
    try:
        for frame in source.frames():
            if max_frames is not None and index >= max_frames:
                break
            clip_time = frame.pts_seconds if frame.pts_seconds is not None else frame.index / fps
            first = clip_time if first is None else first
            t = clip_time - first
            if end_s is not None and t > end_s:
                break
            if progress is not None and expected:
                progress(min(index + 1, expected), expected)
            index += 1
            if t < start_s:
                continue
            yield Frame(frame.camera, frame.index, t, frame.image, frame.pts_seconds)
    finally:
        stop.set()


def tracked_frames(
    frames: Iterable[Frame],
    detector: Detector,
    objects: ObjectsConfig,
    tracker: ObjectTracker,
    cuts: SceneCuts | None = None,
) -> Iterator[TrackedFrame]:
    """Each frame detected, filtered by `objects` (labels, min_area) and tracked; a shot cut starts
    every track afresh, as in the daemon (camd/tracks.py)."""
    for frame in frames:
        if cuts is not None and cuts.cut(frame.image):
            tracker.reset()
        detections = filter_detections(detector.detect(frame.image), objects)
        yield TrackedFrame(frame, tuple(detections), tuple(tracker.update(detections, frame.timestamp)))


def daemon_view(
    clip: Path,
    config: Config,
    detect_fps: float,
    labels: Iterable[str] | None = None,
    start_s: float = 0.0,
    end_s: float | None = None,
    detector: Detector | None = None,
    progress: Progress | None = None,
) -> Iterator[TrackedFrame]:
    """What the daemon configured by `config` would track on this clip at detect_fps: its decoder, its
    detector (made from config.detector unless given), object filters and tracker. `labels`: only
    these of the tracked labels (enrollment of a person needs no vehicles)."""
    objects = config.objects
    if labels is not None:
        wanted = set(labels)
        objects = objects.model_copy(update={"track": [label for label in objects.track if label in wanted]})
        if not objects.track:
            tracked = config.objects.track
            raise ClipError(f"the config tracks none of {sorted(wanted)} (objects.track: {tracked})")
    detector = detector or create_detector(config.detector, config.models_path)
    frames = clip_frames(clip, detect_fps, start_s, end_s, progress=progress)
    tracker = ObjectTracker.for_objects(config.tracker, objects, fps=detect_fps)
    return tracked_frames(frames, detector, objects, tracker, SceneCuts.for_tracker(config.tracker))
