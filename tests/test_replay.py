"""A file read as fast as it decodes is replayed exactly: the same frames reach the detector and the
same events come out, however the detector's and the consumer's speeds interleave (camd/pipeline.py).
Users replay a recording to tune a camera or to enroll, and tests replay clips: both need this."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from camd.config import CameraConfig, Config, DetectorConfig, MotionConfig, MqttConfig
from camd.pipeline import CameraPipeline
from camd.publish.frigate import event_payload
from camd.types import Frame, TrackEvent
from camd.vision.detector import Detector, create_detector
from tests.support.detectors import RecordingDetector
from tests.support.media import make_photo_walkers


def _replay(
    clip: Path, detector: Detector, models_dir: Path, event_delay_s: float = 0.0, decode_delay_s: float = 0.0
) -> tuple[list, list]:
    """(which frames the detector saw, the events' tracks and boxes) for one run. Events are handled
    `event_delay_s` late (a slow consumer: identity work, a busy broker); each frame arrives
    `decode_delay_s` late (a slow decode: a big picture on a busy hub)."""
    motion = MotionConfig(moving_refresh_s=0.5, track_refresh_s=0.5)
    config = Config(models_dir=models_dir, mqtt=MqttConfig(enabled=False), cameras={
        "c": CameraConfig(url=str(clip), detect_fps=10, motion=motion)})  # fmt: skip
    events: list[tuple[Any, ...]] = []

    def sink(published: TrackEvent) -> None:
        event = event_payload(published)
        after = event["after"]
        events.append((event["type"], after["track_id"], after["label"], [round(v) for v in after["box"]]))
        time.sleep(event_delay_s)

    pipeline = CameraPipeline("c", config, detector, sink, threading.Event())
    frames = pipeline.source.frames

    def slow_frames() -> Iterator[Frame]:
        for frame in frames():
            time.sleep(decode_delay_s)
            yield frame

    pipeline.source.frames = slow_frames  # type: ignore[method-assign]
    detected: list[int] = []
    pipeline.on_frame = lambda frame, ran, _boxes: detected.append(frame.index) if ran else None
    pipeline.run()
    assert pipeline.stats.frames == 60
    return detected, events


def test_a_file_replays_the_same_whatever_the_timing(models_dir: Path, tmp_path: Path) -> None:
    # The second walker comes in later: whether the gate already knows of their track decides
    # whether the next frames go to the detector again.
    walkers = make_photo_walkers(models_dir, tmp_path / "walkers.mp4", frames=60, enters={"black": 20})
    detector = create_detector(DetectorConfig(backend="ssd"), models_dir)
    first = _replay(walkers.path, detector, models_dir)
    detected, events = first
    # The gate did skip frames (otherwise timing could not matter) and both walkers were announced.
    assert 0 < len(detected) < 60 and len({e[1] for e in events if e[0] == "new"}) >= 2
    assert _replay(walkers.path, detector, models_dir, event_delay_s=0.05) == first
    assert _replay(walkers.path, RecordingDetector(detector, delay_s=0.15), models_dir) == first
    assert _replay(walkers.path, detector, models_dir, decode_delay_s=0.15) == first
