"""camd's own detector and tracker over a clip file, with each box tied to its decoded frame.

The identity labels of the shared clips (camd/eval/truth.py) were made from these tracks, and a test
checks that the tracks of today's detector and tracker still get those labels. Frames are numbered in
decode order from the start of the file (the numbering the labels use), with the stream time of each
(the daemon's `Frame.pts_seconds`), so a daemon track can be put on the same frame axis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from camd.config.schema import DetectorConfig, EventsConfig, ObjectsConfig, TrackerConfig
from camd.sources.stream import FrameSampler, StreamClock
from camd.types import PERSON, Box
from camd.vision.detector import Detector, create_detector, filter_detections
from camd.vision.tracker import ObjectTracker


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    index: int  # position in decode order from the start of the file, every frame counted
    pts: float  # stream time in seconds (StreamClock, as the daemon's sources compute it)
    image: np.ndarray  # BGR


@dataclass(slots=True)
class ClipTrack:
    """One tracker id over a clip: its boxes by frame index, and whether the daemon would announce it."""

    track_id: int
    label: str
    boxes: dict[int, Box] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)
    times: dict[int, float] = field(default_factory=dict)  # frame index -> pts seconds
    announced: bool = False

    @property
    def first_frame(self) -> int:
        return min(self.boxes)

    @property
    def last_frame(self) -> int:
        return max(self.boxes)


@dataclass(frozen=True, slots=True)
class ClipInfo:
    width: int
    height: int
    fps: float
    frames: int  # decoded frames
    first_pts: float
    times: tuple[float, ...]  # stream time of every frame, in decode order (StreamClock, as the daemon)


def decode(path: Path, fps: float | None = None, last_frame: int | None = None) -> Iterator[DecodedFrame]:
    """Every frame of a file (fps None), or those due on a 1/fps grid of stream time as the daemon's
    camera sources sample them; up to frame `last_frame` when given."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such video file: {path}")
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        clock = StreamClock(stream.time_base, rate)
        sampler = FrameSampler(fps) if fps else None
        for index, frame in enumerate(container.decode(stream)):
            if last_frame is not None and index > last_frame:
                return
            t = clock.time_of(frame.pts, frame.dts)
            if sampler is None or sampler.take(t):
                yield DecodedFrame(index, t, frame.to_ndarray(format="bgr24"))


def clip_info(path: Path) -> ClipInfo:
    """Size, rate, decoded frame count and first stream time (one decode pass without conversion)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        clock = StreamClock(stream.time_base, rate)
        times = tuple(clock.time_of(frame.pts, frame.dts) for frame in container.decode(stream))
        width, height = stream.codec_context.width, stream.codec_context.height
    return ClipInfo(width, height, rate, len(times), times[0] if times else 0.0, times)


def track_clip(
    path: Path,
    models_dir: Path,
    fps: float | None = None,
    detector: Detector | None = None,
    objects: ObjectsConfig | None = None,
    tracker_config: TrackerConfig | None = None,
    last_frame: int | None = None,
) -> dict[int, ClipTrack]:
    """Detect and track every sampled frame of a clip as the daemon's pipeline does with the motion
    gate off: default detector and filters, ByteTrack at the sampling rate, a track announced once it
    has min_track_frames frames and one detection at its label's min_score."""
    objects = objects or ObjectsConfig()
    detector = detector or create_detector(DetectorConfig(), models_dir)
    rate = fps or clip_info(path).fps
    activation = min(objects.filter_for(label).min_score for label in objects.track)
    tracker = ObjectTracker(tracker_config or TrackerConfig(), fps=rate, activation_score=activation)
    min_frames = EventsConfig().min_track_frames
    tracks: dict[int, ClipTrack] = {}
    for frame in decode(path, fps, last_frame):
        detections = filter_detections(detector.detect(frame.image), objects)
        for obj in tracker.update(detections, frame.pts):
            det = obj.detection
            track = tracks.setdefault(obj.track_id, ClipTrack(obj.track_id, det.label))
            track.boxes[frame.index] = det.box
            track.scores[frame.index] = det.score
            track.times[frame.index] = frame.pts
            if len(track.boxes) >= min_frames and max(track.scores.values()) >= objects.filter_for(
                track.label
            ).min_score:
                track.announced = True
    return tracks


def person_tracks(tracks: dict[int, ClipTrack]) -> dict[int, ClipTrack]:
    return {tid: t for tid, t in tracks.items() if t.label == PERSON}
