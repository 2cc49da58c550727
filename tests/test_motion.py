"""The motion gate on real decoded frames: quiet scenes skip the detector, newcomers wake it."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np

from camd.config import CameraConfig, MotionConfig
from camd.sources.stream import CameraSource
from camd.types import Box
from camd.vision.motion import MotionDetector, MotionGate, box_mask
from tests.support.media import WalkerScene, default_walker_scene, make_walker_clip


def decoded_frames(path: Path) -> list[np.ndarray]:
    source = CameraSource("m", CameraConfig(url=str(path), detect_fps=10.0), threading.Event())
    return [frame.image for frame in source.frames()]


def covered(region: tuple[int, int, int, int], boxes: list[Box], margin: float = 0.5) -> bool:
    """True when most of a moving region lies inside the boxes (each grown by `margin`)."""
    x1, y1, x2, y2 = region
    area = max(1, (x2 - x1) * (y2 - y1))
    inside = 0.0
    for bx1, by1, bx2, by2 in boxes:
        grow_x, grow_y = (bx2 - bx1) * margin, (by2 - by1) * margin
        ix = min(x2, bx2 + grow_x) - max(x1, bx1 - grow_x)
        iy = min(y2, by2 + grow_y) - max(y1, by1 - grow_y)
        if ix > 0 and iy > 0:
            inside += ix * iy
    return inside / area >= 0.7


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
    # every changed pixel is a walker's: none outside their boxes, blue's outside red's alone
    enough = MotionConfig().min_area * results[19].mask.size
    mask = results[19].mask
    assert np.count_nonzero(mask > box_mask(results[19], list(truth.values()))) == 0
    assert np.count_nonzero(mask > box_mask(results[19], [truth["red"]])) >= enough


def test_gate_skips_quiet_frames_but_refreshes(tmp_path: Path) -> None:
    still = WalkerScene(320, 240, 10.0, 60, walkers=())
    frames = decoded_frames(make_walker_clip(tmp_path / "still.mp4", still).path)
    gate = MotionGate(MotionConfig(refresh_s=2.0))
    decisions = [gate.should_detect(image, t / 10.0, []) for t, image in enumerate(frames)]
    assert [t for t, run in enumerate(decisions) if run] == [0, 20, 40]


def test_tracked_motion_is_checked_periodically_and_new_motion_at_once(tmp_path: Path) -> None:
    scene = default_walker_scene()
    frames = decoded_frames(make_walker_clip(tmp_path / "walk.mp4", scene).path)

    gate = MotionGate(MotionConfig(moving_refresh_s=0.0))  # 0: a tracked object that moves, every frame
    runs = [t for t, image in enumerate(frames)
            if gate.should_detect(image, t / 10.0, list(scene.boxes(t).values()))]
    assert len(runs) == len(frames)

    config = MotionConfig(moving_refresh_s=0.5, track_refresh_s=0.5, refresh_s=5.0)
    gate = MotionGate(config)  # both walkers tracked, moving re-detected every 0.5 s only
    runs = [t for t, image in enumerate(frames)
            if gate.should_detect(image, t / 10.0, list(scene.boxes(t).values()))]
    assert runs == list(range(0, 60, 5))

    gate = MotionGate(config)  # only red is tracked: blue's motion wakes the detector every frame
    runs = [t for t, image in enumerate(frames)
            if gate.should_detect(image, t / 10.0, [scene.boxes(t)["red"]])]
    assert len(runs) == len(frames)

    # Once the detector has looked at blue and found nothing there (a shape no model knows), blue's
    # motion is not new until the next refresh: it moves a few pixels a frame, inside that region.
    gate = MotionGate(config)
    runs = []
    for t, image in enumerate(frames):
        if gate.should_detect(image, t / 10.0, [scene.boxes(t)["red"]]):
            runs.append(t)
            gate.examined(gate.last_regions)  # the detector found red only
    assert len(runs) < len(frames) / 2
    assert all(b - a <= 5 for a, b in itertools.pairwise(runs)), "never longer than the refresh"
    assert sum(gate.reasons.values()) == len(runs)  # every run has its reason

    gate = MotionGate(MotionConfig(enabled=False))
    assert all(gate.should_detect(image, t / 10.0, []) for t, image in enumerate(frames))


def test_motion_far_from_anything_examined_wakes_the_detector_at_once(tmp_path: Path) -> None:
    """A newcomer in another part of the picture is not 'explained' by a region examined elsewhere."""
    scene = default_walker_scene()
    red_only = WalkerScene(scene.width, scene.height, scene.fps, scene.frames, walkers=(scene.walkers[0],))
    frames = decoded_frames(make_walker_clip(tmp_path / "red.mp4", red_only).path)
    both = decoded_frames(make_walker_clip(tmp_path / "both.mp4", scene).path)
    config = MotionConfig(moving_refresh_s=0.5, track_refresh_s=0.5, refresh_s=5.0)

    def gate_after_red_alone() -> MotionGate:
        gate = MotionGate(config)
        runs = []
        for t in range(18):
            if gate.should_detect(frames[t], t / 10.0, [scene.boxes(t)["red"]]):
                runs.append(t)
                gate.examined(gate.last_regions)
        assert runs == [0, 5, 10, 15]  # red walks alone, tracked: every 0.5 s only
        return gate

    assert not gate_after_red_alone().should_detect(frames[18], 1.8, [scene.boxes(18)["red"]])
    # the same moment with blue on its own lane: new motion elsewhere, detect now
    assert gate_after_red_alone().should_detect(both[18], 1.8, [scene.boxes(18)["red"]])
