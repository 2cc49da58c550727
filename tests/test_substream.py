"""A camera with a detect substream: detection on the small stream, identity crops from the main
stream's frame nearest in time, boxes scaled. Two real files made from one real clip at two
resolutions stand in for the camera's two streams."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from camd.config import CameraConfig, Config, MotionConfig, MqttConfig, ObjectFilter, ObjectsConfig
from camd.identity.service import IdentityService
from camd.pipeline import CameraPipeline
from camd.publish.frigate import event_payload
from camd.sources.mainstream import MainStream
from camd.sources.stream import CameraSource
from camd.vision.detector import create_detector
from tests.support.media import transcode

MAIN_SIZE = (640, 272)
SUB_SIZE = (320, 136)
LABELS = ("car", "truck", "bus", "bicycle", "motorcycle", "person")


@pytest.fixture(scope="module")
def streams(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(main, sub): the bikes clip (cars, cyclists) at full and half resolution, 4 s, GOP 10."""
    folder = tmp_path_factory.mktemp("substream")
    clip = models_dir / "demo_bikes_clip" / "bikes.mp4"
    main = transcode(clip, folder / "main.mp4", gop=10, max_frames=100, size=MAIN_SIZE)
    sub = transcode(clip, folder / "sub.mp4", gop=10, max_frames=100, size=SUB_SIZE)
    return main, sub


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_main_frame_nearest_in_time_decoded_only_on_demand(streams: tuple[Path, Path]) -> None:
    main_path, sub_path = streams
    stop = threading.Event()
    source = CameraSource("door", CameraConfig(url=str(sub_path), detect_fps=5.0), stop)
    main = MainStream("door", CameraConfig(url=str(main_path)), stop, origin=lambda: source.clock_origin)
    frames = list(source.frames())
    assert len(frames) == 20
    assert main.stats.decoded == 0 and main.stats.packets == 0, "nothing read before a crop is wanted"

    # A request at 2 s reads the main file that far but decodes only from the keyframe before it.
    asked = frames[10]
    image = main.image_near(asked.timestamp)
    assert image is not None and (image.shape[1], image.shape[0]) == MAIN_SIZE
    assert main.stats.decoded <= 12, f"decoded {main.stats.decoded} frames for one crop (GOP is 10)"
    assert main.stats.packets >= 50

    # It is the same moment: scaled down it matches the substream frame, not one a second away.
    small = cv2.resize(image, SUB_SIZE, interpolation=cv2.INTER_AREA)
    assert difference(small, asked.image) < 6.0
    assert difference(small, frames[15].image) > 2 * difference(small, asked.image)

    # Consecutive requests continue decoding where the last one stopped.
    before = main.stats.decoded
    for frame in frames[11:15]:
        found = main.image_near(frame.timestamp)
        assert found is not None
        assert difference(cv2.resize(found, SUB_SIZE, interpolation=cv2.INTER_AREA), frame.image) < 6.0
    assert main.stats.decoded - before <= 4 * 5 + 2, "each step decodes only the frames in between"
    main.close()


def test_missing_main_stream_falls_back_to_the_substream(streams: tuple[Path, Path], tmp_path: Path) -> None:
    _, sub_path = streams
    stop = threading.Event()
    source = CameraSource("door", CameraConfig(url=str(sub_path), detect_fps=5.0), stop)
    main = MainStream("door", CameraConfig(url=str(tmp_path / "gone.mp4")), stop,
                      origin=lambda: source.clock_origin)
    frame = next(iter(source.frames()))
    assert main.image_near(frame.timestamp) is None
    main.close()


def test_identity_crops_come_from_the_main_stream(streams: tuple[Path, Path], tmp_path: Path,
                                                   models_dir: Path) -> None:
    """The pipeline detects and tracks on the substream; identity sees the main frame with every
    box scaled by 2, and keeps crops twice the size the substream would give."""
    main_path, sub_path = streams
    config = Config(
        state_dir=tmp_path / "state", models_dir=models_dir, mqtt=MqttConfig(enabled=False),
        # small boxes on a 320x136 frame: no area floor
        objects=ObjectsConfig(filters={label: ObjectFilter(min_score=0.5, min_area=0) for label in LABELS}),
        # the gate off: every tracked frame is a detected one, which identity sees
        cameras={"door": CameraConfig(url=str(main_path), detect_url=str(sub_path), detect_fps=5.0,
                                      motion=MotionConfig(enabled=False))},
    )
    identity = IdentityService(config)
    events: list[dict[str, Any]] = []
    detector = create_detector(config.detector, config.models_path)
    pipeline = CameraPipeline("door", config, detector, lambda event: events.append(event_payload(event)),
                              threading.Event(), identity=identity)
    assert pipeline.identity is not None and pipeline.main is not None

    tracked_boxes: list[dict[int, tuple[float, ...]]] = []
    seen: list[tuple[tuple[int, ...], dict[int, tuple[float, ...]]]] = []
    crops: list[tuple[int, int, tuple[float, ...]]] = []  # width, height, box in main-frame pixels
    track = pipeline.tracker.update
    observe = pipeline.identity.observe

    def tracker_spy(*args: Any, **kwargs: Any) -> Any:
        result = track(*args, **kwargs)
        tracked_boxes.append({t.track_id: t.detection.box for t in result})
        return result

    def observe_spy(frame: Any, tracked: Any, states: Any) -> Any:
        seen.append((frame.image.shape, {t.track_id: t.detection.box for t in tracked}))
        changed = observe(frame, tracked, states)
        for evidence in pipeline.identity.tracks.values():  # type: ignore[union-attr]
            crops.extend((c.image.shape[1], c.image.shape[0], c.box) for c in evidence.crops)
        return changed

    pipeline.tracker.update = tracker_spy  # type: ignore[method-assign]
    pipeline.identity.observe = observe_spy  # type: ignore[method-assign]
    try:
        pipeline.run()
    finally:
        identity.close()

    assert pipeline.source.status.width == SUB_SIZE[0], "detection ran on the substream"
    assert seen, "objects were tracked and identity looked at them"
    assert all(shape[:2] == (MAIN_SIZE[1], MAIN_SIZE[0]) for shape, _ in seen), "identity saw main frames"
    assert pipeline.stats.main_frames == len(seen)
    with_objects = [boxes for boxes in tracked_boxes if boxes]
    assert len(with_objects) == len(seen)
    for (_, scaled), original in zip(seen, with_objects, strict=True):
        assert scaled.keys() == original.keys()
        for track_id, box in original.items():
            assert scaled[track_id] == pytest.approx(tuple(v * 2 for v in box))
    assert crops, "identity kept crops"
    scaled_boxes = {tuple(box) for _, boxes in seen for box in boxes.values()}
    for width, height, box in crops:
        assert tuple(box) in scaled_boxes, "a kept crop's box is a scaled substream box"
        # cut from the main frame: twice the pixels the substream box has, each way
        assert abs(width - (box[2] - box[0])) <= 1 and abs(height - (box[3] - box[1])) <= 1
    assert any(e["type"] == "end" for e in events)


@pytest.fixture(scope="module")
def live_streams(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(main, sub) of 8 s: the 20 frames the live test reads (4 s at 5 frames/s) all come from one
    RTSP session even when the sessions start late on a busy machine (a session ends with its clip)."""
    folder = tmp_path_factory.mktemp("live")
    clip = models_dir / "demo_bikes_clip" / "bikes.mp4"
    main = transcode(clip, folder / "main.mp4", gop=10, max_frames=200, size=MAIN_SIZE)
    sub = transcode(clip, folder / "sub.mp4", gop=10, max_frames=200, size=SUB_SIZE)
    return main, sub


def test_live_main_stream_over_rtsp(live_streams: tuple[Path, Path], rtsp_server: Any) -> None:
    """A live camera: both streams over a real RTSP exchange; the main stream is read all the time
    by its own thread and matched by arrival time."""
    main_path, sub_path = live_streams
    main_server = rtsp_server(main_path, mount="/main")
    sub_server = rtsp_server(sub_path, mount="/sub")
    stop = threading.Event()
    started = time.monotonic()
    main = MainStream("door", CameraConfig(url=main_server.url), stop).start()
    source = CameraSource("door", CameraConfig(url=sub_server.url, detect_fps=5.0), stop)
    frames = []
    matched = []
    try:
        for frame in source.frames():
            if not frames:
                first_frame_after = time.monotonic() - started
            frames.append(frame)
            image = main.image_near(frame.timestamp)
            if image is not None:
                matched.append((frame, image))
            if len(frames) >= 20:
                break
    finally:
        stop.set()
        main.close()
    assert main.stats.packets > 0
    assert len(matched) >= 14, f"{len(matched)} of {len(frames)} frames had a main frame"
    assert all((image.shape[1], image.shape[0]) == MAIN_SIZE for _, image in matched)
    assert main.stats.decoded < main.stats.packets, "only what was asked for was decoded"
    # Matched by arrival time: each main frame shows the moment of the substream frame it was asked
    # for, up to the skew between the two RTSP sessions' starts (this test server plays each session
    # from the clip's start; a real camera's two streams share one clock). So the substream frame that
    # looks most like each main frame sits at one steady offset from the frame that asked for it.
    # The first second is left out: stream probing delivers its packets to both readers in a burst, so
    # their arrival times say little there (a camera's streams do that too, once, on connecting).
    offsets = []
    for frame, image in (pair for pair in matched if pair[0].index >= 5):
        small = cv2.resize(image, SUB_SIZE, interpolation=cv2.INTER_AREA)
        best = min(frames, key=lambda other: difference(small, other.image))
        offsets.append(best.index - frame.index)
    typical = sorted(offsets)[len(offsets) // 2]
    steady = sum(abs(offset - typical) <= 1 for offset in offsets)
    assert steady >= len(offsets) - 2, f"offsets to the best-matching frame drift: {offsets}"
    skew_frames = first_frame_after * 5.0  # detect_fps: the sessions started at most this far apart
    assert abs(typical) <= skew_frames + 2, f"{typical} frames off; sessions {first_frame_after:.2f} s apart"
