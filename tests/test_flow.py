"""Boxes followed by optical flow between detections, on real people in a real H.264 clip."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import camd.vision.flow as flow_module
from camd.config import CameraConfig, Config, DetectorConfig, MotionConfig, MqttConfig
from camd.geometry import iou
from camd.pipeline import CameraPipeline
from camd.sources.stream import CameraSource
from camd.vision.detector import create_detector
from camd.vision.flow import BoxFlow
from tests.support.media import make_photo_walkers


@pytest.mark.parametrize("max_width", [800, 320], ids=["full-size", "half-size"])
def test_flow_follows_walking_people_between_detections(
    models_dir: Path, tmp_path: Path, max_width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the 640 px clip at full size, and followed at half size as a wide frame would be."""
    monkeypatch.setattr(flow_module, "MAX_WIDTH", max_width)
    walkers = make_photo_walkers(models_dir, tmp_path / "walkers.mp4")
    source = CameraSource("f", CameraConfig(url=str(walkers.path), detect_fps=walkers.fps), threading.Event())
    flow = BoxFlow()
    worst = 1.0
    still: tuple[float, float, float, float] = (10.0, 400.0, 90.0, 475.0)  # background only
    for frame in source.frames():
        truth = {0: walkers.truth("beige", frame.index), 1: walkers.truth("black", frame.index)}
        if frame.index % 5 == 0:  # a detection every 5th frame, as the gate would leave it
            flow.reset(frame.image, {**truth, 2: still})
            continue
        followed = flow.follow(frame.image)
        assert set(followed) >= {0, 1}, f"frame {frame.index}: lost a walker ({sorted(followed)})"
        worst = min(worst, *(iou(followed[i], truth[i]) for i in (0, 1)))
        if 2 in followed:  # the textured background does not move, so neither may its box
            assert max(abs(a - b) for a, b in zip(followed[2], still, strict=True)) < 1.0
    # the walkers move 6-9 px a frame: without the flow, a box 4 frames old overlaps its person far less
    assert worst >= 0.75, f"worst overlap of a followed box with its walker: {worst:.2f}"


def test_gated_pipeline_keeps_each_walker_with_a_fraction_of_the_detector_calls(
    models_dir: Path, tmp_path: Path
) -> None:
    walkers = make_photo_walkers(models_dir, tmp_path / "walkers.mp4", frames=60)
    detector = create_detector(DetectorConfig(backend="ssd"), models_dir)
    motion = MotionConfig(moving_refresh_s=0.5, track_refresh_s=0.5)
    config = Config(models_dir=models_dir, mqtt=MqttConfig(enabled=False), cameras={
        "c": CameraConfig(url=str(walkers.path), detect_fps=walkers.fps, motion=motion)})
    pipeline = CameraPipeline("c", config, detector, lambda _event: None, threading.Event())
    ids: dict[str, list[int]] = {"beige": [], "black": []}

    def on_frame(frame, _detected, boxes):  # type: ignore[no-untyped-def]
        for name in ids:
            ids[name] += [tid for tid, box in boxes if iou(box, walkers.truth(name, frame.index)) >= 0.5]

    pipeline.on_frame = on_frame
    pipeline.run()
    assert pipeline.stats.frames == walkers.frames
    detected = pipeline.stats.frames - pipeline.stats.skipped
    assert detected <= 0.4 * walkers.frames, f"the detector ran on {detected} of {walkers.frames} frames"
    for name, given in ids.items():
        assert len(given) >= 0.8 * walkers.frames, f"{name} seen in {len(given)} of {walkers.frames} frames"
        assert len(set(given)) == 1, f"{name} changed id: {given}"
