"""The shared inference pool on real frames with the real SSD detector: results come back to the
right camera in frame order, cameras take turns, overload drops the oldest frames with a count
and memory stays bounded, and a batch finds what one-by-one calls find."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from camd.config import CameraConfig, DetectorConfig
from camd.sources.stream import CameraSource
from camd.types import Detection, Frame
from camd.vision.detector import Detector, create_detector
from camd.vision.pool import CameraLane, InferencePool, LaneItem
from tests.support.data import SHARED_DATA
from tests.support.detectors import RecordingDetector


@pytest.fixture(scope="module")
def ssd(models_dir: Path) -> Detector:
    return create_detector(DetectorConfig(backend="ssd", threads=2), models_dir)


@pytest.fixture(scope="module")
def clip_frames(models_dir: Path) -> list[np.ndarray]:
    """12 real frames of the bikes clip (cars and cyclists), decoded by camd's own source."""
    source = CameraSource("c", CameraConfig(url=str(models_dir / "demo_bikes_clip" / "bikes.mp4"),
                                            detect_fps=2.0), threading.Event())
    frames = [frame.image for frame in source.frames()]
    assert len(frames) >= 12
    return frames[:12]


def consume(lane: CameraLane, out: list[LaneItem]) -> threading.Thread:
    def run() -> None:
        while not lane.finished:
            item = lane.next(0.1)
            if item is not None:
                out.append(item)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def same_detections(got: list[Detection], want: list[Detection], tolerance_px: float = 2.0) -> bool:
    if len(got) != len(want):
        return False
    for a, b in zip(sorted(got, key=lambda d: -d.score), sorted(want, key=lambda d: -d.score), strict=True):
        if a.label != b.label or abs(a.score - b.score) > 0.02:
            return False
        if max(abs(x - y) for x, y in zip(a.box, b.box, strict=True)) > tolerance_px:
            return False
    return True


def test_each_camera_gets_its_own_results_in_frame_order(
    models_dir: Path, ssd: Detector, clip_frames: list[np.ndarray]
) -> None:
    """Three cameras, two workers, batches of three: every frame comes back to its camera, in order,
    with the detections of that very frame (a mix-up between cameras or frames would show here)."""
    config = DetectorConfig(backend="ssd", threads=1, workers=2, batch=3)
    pool = InferencePool.from_config(config, models_dir)
    reference = {id(image): ssd.detect(image) for image in clip_frames}
    lanes = {name: pool.lane(name, capacity=4, drop_oldest=False) for name in ("a", "b", "c")}
    taken: dict[str, list[LaneItem]] = {name: [] for name in lanes}
    consumers = [consume(lane, taken[name]) for name, lane in lanes.items()]

    def submit_all(name: str, offset: int) -> None:
        for index in range(len(clip_frames)):
            image = clip_frames[(index + offset) % len(clip_frames)]
            frame = Frame(camera=name, index=index, timestamp=index * 0.5, image=image)
            assert lanes[name].submit(frame, detect=index % 3 != 2)  # every third frame: gate skipped it
            assert lanes[name].depth <= lanes[name].capacity
        lanes[name].close()

    producers = [threading.Thread(target=submit_all, args=(name, i * 4)) for i, name in enumerate(lanes)]
    for thread in producers:
        thread.start()
    for thread in producers + consumers:
        thread.join(timeout=120)
    pool.stop()

    assert pool.calls < pool.frames, "with three cameras queuing, some calls carried a batch"
    for name, items in taken.items():
        assert [item.frame.index for item in items] == list(range(len(clip_frames))), name
        for item in items:
            assert item.frame.camera == name
            if item.detect:
                assert not item.failed
                want = reference[id(item.frame.image)]
                assert same_detections(item.detections, want), (name, item.frame.index)
            else:
                assert item.detections == []  # the gate skipped it: the detector never saw it
        assert lanes[name].dropped == 0, "a file's lane waits instead of dropping"
    assert sum(len(items) for items in taken.values()) == 36
    assert pool.frames == sum(item.detect for items in taken.values() for item in items)


def test_cameras_take_turns(ssd: Detector, clip_frames: list[np.ndarray]) -> None:
    """A camera with a full queue does not starve another: one worker alternates between them."""
    recorder = RecordingDetector(ssd)
    pool = InferencePool([recorder])
    lanes = {name: pool.lane(name, capacity=4, drop_oldest=False) for name in ("a", "b")}
    owner: dict[int, str] = {}
    with pool.paused():  # both queues fill up while the detector is busy
        for index in range(4):
            for name in ("a", "b") if index else ("a",):
                image = clip_frames[index * 2 + (name == "b")].copy()
                owner[id(image)] = name
                lanes[name].submit(Frame(name, index, float(index), image), detect=True)
        time.sleep(0.2)  # the worker has taken a0 and waits for the detector
        image = clip_frames[1].copy()
        owner[id(image)] = "b"
        lanes["b"].submit(Frame("b", 0, 0.0, image), detect=True)
    taken: list[LaneItem] = []
    for lane in lanes.values():
        lane.close()
        consume(lane, taken).join(timeout=60)
    pool.stop()
    order = [owner[i] for i in recorder.seen]
    assert order[:6] == ["a", "b", "a", "b", "a", "b"], order


def test_overload_drops_the_oldest_frames_and_counts_them(
    ssd: Detector, clip_frames: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    """A live camera faster than the detector: the queue never holds more than its capacity, the
    oldest frames go, the newest are analysed, every drop is counted and logged once (rate-limited)."""
    slow = RecordingDetector(ssd, delay_s=0.05)
    pool = InferencePool([slow])
    lane = pool.lane("live", capacity=3, drop_oldest=True)
    taken: list[LaneItem] = []
    consumer = consume(lane, taken)
    submitted = 40
    depths = []
    with caplog.at_level(logging.WARNING, logger="camd.vision.pool"):
        for index in range(submitted):
            frame = Frame("live", index, index * 0.01, clip_frames[index % len(clip_frames)])
            assert lane.submit(frame, detect=True)
            depths.append(lane.depth)
            time.sleep(0.005)  # a 200 fps camera against a detector of ~60+ ms per frame
        lane.close()
        consumer.join(timeout=60)
    pool.stop()

    indices = [item.frame.index for item in taken]
    assert max(depths) <= 3, "the queue is bounded"
    assert lane.dropped > 0 and lane.dropped + len(taken) == submitted, "every frame analysed or counted"
    assert indices == sorted(indices), "in order"
    assert indices[-2:] == [submitted - 2, submitted - 1], "the newest frames are kept"
    assert len(taken) < submitted / 2
    warnings = [r for r in caplog.records if "detector is behind" in r.getMessage()]
    assert len(warnings) == 1, "one warning, not one per dropped frame"


def test_detector_error_skips_the_frame_and_the_pool_keeps_going(
    ssd: Detector, clip_frames: list[np.ndarray]
) -> None:
    busy = [image for image in clip_frames if ssd.detect(image)]
    pool = InferencePool([ssd])
    lane = pool.lane("cam", capacity=4, drop_oldest=False)
    taken: list[LaneItem] = []
    consumer = consume(lane, taken)
    lane.submit(Frame("cam", 0, 0.0, busy[0]), detect=True)
    empty = np.zeros((0, 10, 3), np.uint8)  # the detector raises on it
    lane.submit(Frame("cam", 1, 0.5, empty), detect=True)
    lane.submit(Frame("cam", 2, 1.0, busy[-1]), detect=True)
    lane.close()
    consumer.join(timeout=60)
    pool.stop()
    assert [item.failed for item in taken] == [False, True, False]
    assert taken[0].detections and taken[2].detections
    assert pool.errors == 1


def test_a_batch_finds_what_single_calls_find(ssd: Detector, clip_frames: list[np.ndarray]) -> None:
    """OpenCV DNN's blobFromImages: frames of different sizes in one forward pass, same detections."""
    images = [clip_frames[0], clip_frames[5], cv2.resize(clip_frames[9], (480, 360))]
    bus = SHARED_DATA / "images" / "bus.jpg"
    if bus.exists():
        images.append(cv2.imread(str(bus)))
    one_by_one = [ssd.detect(image) for image in images]
    batched = ssd.detect_batch(images)  # type: ignore[attr-defined]
    assert sum(len(d) for d in one_by_one) >= 4, "real objects in these frames"
    for got, want in zip(batched, one_by_one, strict=True):
        assert same_detections(got, want)


def test_yolo_with_a_fixed_batch_of_one_runs_a_batch_frame_by_frame(
    models_dir: Path, clip_frames: list[np.ndarray]
) -> None:
    """The shipped YOLO export takes one frame per call: a batch is split, results stay per frame."""
    yolo = create_detector(DetectorConfig(backend="yolo", threads=2), models_dir)
    assert yolo.batches is False  # type: ignore[attr-defined]
    images = [clip_frames[3], cv2.resize(clip_frames[8], (480, 360))]
    batched = yolo.detect_batch(images)  # type: ignore[attr-defined]
    assert any(batched), "the cyclists are people"
    for got, image in zip(batched, images, strict=True):
        assert same_detections(got, yolo.detect(image), tolerance_px=0.01)


def test_frames_queued_when_detection_is_switched_off_are_not_detected(
    ssd: Detector, clip_frames: list[np.ndarray]
) -> None:
    """The camera's detect switch goes off while frames wait behind a slow one: those pass through
    undetected, in order; only the frame already in the detector finishes."""
    in_detector = threading.Event()
    slow = RecordingDetector(ssd, hold=in_detector)
    pool = InferencePool([slow])
    lane = pool.lane("door", capacity=4, drop_oldest=False)
    for index in range(4):
        assert lane.submit(Frame("door", index, float(index), clip_frames[index]), detect=True)
    deadline = time.monotonic() + 10
    while not slow.seen and time.monotonic() < deadline:  # the first frame is in the detector
        time.sleep(0.01)
    assert lane.skip_waiting() == 3
    in_detector.set()
    taken: list[LaneItem] = []
    consumer = consume(lane, taken)
    lane.close()
    consumer.join(timeout=30)
    pool.stop()
    assert [item.frame.index for item in taken] == [0, 1, 2, 3]
    assert [item.detect for item in taken] == [True, False, False, False]
    assert len(slow.seen) == 1, "only the frame already in the detector was detected"
