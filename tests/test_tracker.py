"""The tracker keeps one id per walker through noise, missed detections and crossing paths."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from camd.config import CameraConfig, DetectorConfig, TrackerConfig
from camd.geometry import iou
from camd.sources.stream import CameraSource
from camd.types import Detection
from camd.vision.detector import create_detector
from camd.vision.tracker import ObjectTracker
from tests.support.media import make_photo_walkers

FPS = 5.0


def walker_box(start: tuple[float, float], velocity: tuple[float, float], t: int) -> tuple[float, ...]:
    x, y = start[0] + velocity[0] * t, start[1] + velocity[1] * t
    return (x, y, x + 60.0, y + 160.0)


def run_walkers(paths: dict[str, tuple], frames: int, missed: dict[str, set[int]], seed: int = 1):
    """Feed noisy detections of walkers on known straight paths; return walker -> ids it was given."""
    rng = random.Random(seed)
    tracker = ObjectTracker(TrackerConfig(), fps=FPS)
    ids: dict[str, list[int]] = {name: [] for name in paths}
    for t in range(frames):
        detections, owners = [], []
        for name, (start, velocity, label) in paths.items():
            if t in missed.get(name, set()):
                continue
            box = tuple(v + rng.uniform(-3, 3) for v in walker_box(start, velocity, t))
            detections.append(Detection(label, rng.uniform(0.55, 0.95), box))
            owners.append(name)
        rng.shuffle(order := list(range(len(detections))))
        tracked = tracker.update([detections[i] for i in order], timestamp=1000.0 + t / FPS)
        for obj in tracked:
            owner = owners[detections.index(obj.detection)]
            ids[owner].append(obj.track_id)
    return ids


def test_one_id_per_walker_through_missed_detections_and_crossing() -> None:
    paths = {
        # two people crossing each other at different depths, and a car driving by
        "anna": ((20.0, 100.0), (12.0, 1.0), "person"),
        "ben": ((500.0, 130.0), (-12.0, 0.0), "person"),
        "car": ((0.0, 300.0), (25.0, 0.0), "car"),
    }
    missed = {"anna": {10, 11, 12}, "ben": {25}, "car": {5, 6}}
    ids = run_walkers(paths, frames=40, missed=missed)
    for name, given in ids.items():
        assert len(given) >= 30, f"{name} was tracked in too few frames: {len(given)}"
        assert len(set(given)) == 1, f"{name} changed id: {sorted(set(given))}"
    assert len({given[0] for given in ids.values()}) == 3, "two walkers share an id"


def test_vehicle_label_flip_keeps_the_id() -> None:
    """SSD calls one vehicle car in one frame and truck in the next: still one track."""
    tracker = ObjectTracker(TrackerConfig(), fps=FPS)
    seen: set[int] = set()
    for t in range(12):
        label = "car" if t % 2 else "truck"
        for obj in tracker.update([Detection(label, 0.8, (100.0 + 5 * t, 50.0, 300.0 + 5 * t, 150.0))],
                                  timestamp=float(t) / FPS):
            seen.add(obj.track_id)
    assert len(seen) == 1


def test_a_track_lost_longer_than_the_buffer_gets_a_new_id() -> None:
    config = TrackerConfig(lost_track_s=1.0)
    tracker = ObjectTracker(config, fps=FPS)
    first = set()
    for t in range(5):
        first |= {o.track_id for o in tracker.update([Detection("person", 0.9, (10, 10, 70, 170))], t / FPS)}
    for t in range(5, 20):  # 3 s without the person
        tracker.update([], t / FPS)
    later = set()
    for t in range(20, 25):
        later |= {o.track_id for o in tracker.update([Detection("person", 0.9, (10, 10, 70, 170))], t / FPS)}
    assert first and later and first.isdisjoint(later)


def test_real_people_walking_a_generated_clip_keep_one_id_each(models_dir: Path, tmp_path: Path) -> None:
    """Two real people walk known straight paths in an H.264 clip; the real detector and tracker
    must give each one a single id that follows its path."""
    walkers = make_photo_walkers(models_dir, tmp_path / "walkers.mp4")
    detector = create_detector(DetectorConfig(backend="ssd"), models_dir)
    tracker = ObjectTracker(TrackerConfig(), fps=walkers.fps)
    camera = CameraConfig(url=str(walkers.path), detect_fps=walkers.fps)
    source = CameraSource("test", camera, threading.Event())
    ids: dict[str, list[int]] = {"beige": [], "black": []}
    for frame in source.frames():
        for obj in tracker.update(detector.detect(frame.image), frame.timestamp):
            for name in ids:
                if iou(obj.detection.box, walkers.truth(name, frame.index)) >= 0.5:
                    ids[name].append(obj.track_id)
    for name, given in ids.items():
        assert len(given) >= 0.8 * walkers.frames, f"{name} seen in {len(given)} of {walkers.frames} frames"
        assert len(set(given)) == 1, f"{name} changed id: {given}"
    assert ids["beige"][0] != ids["black"][0]


def test_ids_of_finished_tracks_are_forgotten() -> None:
    """Months of tracks must not grow the id table: only live tracks keep a mapping."""
    tracker = ObjectTracker(TrackerConfig(lost_track_s=0.5), fps=FPS)
    t = 0.0
    for walker in range(400):  # 400 people pass one after another
        x = float(walker % 7) * 80
        for _ in range(4):
            tracker.update([Detection("person", 0.9, (x, 10.0, x + 50.0, 150.0))], t)
            t += 1 / FPS
        for _ in range(5):
            tracker.update([], t)
            t += 1 / FPS
    assert len(tracker._ids) < 300
    assert next(tracker._next_id) > 390, "ids keep counting up: no id is reused"
