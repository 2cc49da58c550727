"""The motion gate on real decoded frames: quiet scenes skip the detector, newcomers wake it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from camd.config import CameraConfig, MotionConfig
from camd.sources.stream import CameraSource
from camd.vision.motion import MotionDetector, MotionGate, covered
from tests.support.media import WalkerScene, default_walker_scene, make_walker_clip


def decoded_frames(path: Path) -> list[np.ndarray]:
    source = CameraSource("m", CameraConfig(url=str(path), detect_fps=10.0), threading.Event())
    return [frame.image for frame in source.frames()]


def test_static_scene_has_no_motion_and_a_walker_does(tmp_path: Path) -> None:
    scene = default_walker_scene()
    still = WalkerScene(scene.width, scene.height, scene.fps, 30, walkers=())
    quiet = decoded_frames(make_walker_clip(tmp_path / "still.mp4", still).path)
    busy = decoded_frames(make_walker_clip(tmp_path / "walk.mp4", scene).path)
    detector = MotionDetector(MotionConfig())
    detector.update(quiet[0])
    assert not any(detector.update(image).moving for image in quiet[1:]), "compression noise is not motion"
    detector = MotionDetector(MotionConfig())
    detector.update(busy[0])
    results = [detector.update(image) for image in busy[1:]]
    assert all(r.moving for r in results)
    # the moving regions are where the walkers are
    truth = scene.boxes(20)
    assert all(any(covered(region, [box]) for box in truth.values()) for region in results[19].boxes)


def test_gate_skips_quiet_frames_but_refreshes(tmp_path: Path) -> None:
    still = WalkerScene(320, 240, 10.0, 60, walkers=())
    frames = decoded_frames(make_walker_clip(tmp_path / "still.mp4", still).path)
    gate = MotionGate(MotionConfig(refresh_s=2.0))
    decisions = [gate.should_detect(image, t / 10.0, []) for t, image in enumerate(frames)]
    assert [t for t, run in enumerate(decisions) if run] == [0, 20, 40]


def test_tracked_motion_is_checked_periodically_and_new_motion_at_once(tmp_path: Path) -> None:
    scene = default_walker_scene()
    frames = decoded_frames(make_walker_clip(tmp_path / "walk.mp4", scene).path)
    config = MotionConfig(track_refresh_s=0.5, refresh_s=5.0)

    gate = MotionGate(config)  # both walkers tracked: detector every 0.5 s only
    runs = [t for t, image in enumerate(frames)
            if gate.should_detect(image, t / 10.0, list(scene.boxes(t).values()))]
    assert runs == list(range(0, 60, 5))

    gate = MotionGate(config)  # only red is tracked: blue's motion wakes the detector every frame
    runs = [t for t, image in enumerate(frames)
            if gate.should_detect(image, t / 10.0, [scene.boxes(t)["red"]])]
    assert len(runs) == len(frames)

    gate = MotionGate(MotionConfig(enabled=False))
    assert all(gate.should_detect(image, t / 10.0, []) for t, image in enumerate(frames))
