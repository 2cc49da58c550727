"""The far-people pass finds a walker too small for the 300x300 first pass, where motion shows him.

The walker is real: the most confident person of a vtest frame, cut out and scaled to 60 px tall, in
a 1280x720 frame (the vtest scene enlarged and blurred behind him: nothing else there is a person).
The moving region comes from camd's own motion detector, fed the frame without him, then with him.
At 40 px he makes no moving region on the gate's 160 px copy: the gate measures motion a second time,
320 px wide, for the far pass alone (`far.motion_width`). A walker the pass found once is looked for
again where his track says he is (`far.track_height`), moving region or not.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from camd.config.schema import DetectorConfig, FarConfig, MotionConfig
from camd.geometry import iou
from camd.types import Box, Detection, Frame
from camd.vision.detector import create_detector
from camd.vision.far import FarLook, far_pass, tiles_for, track_regions, unexplained_regions
from camd.vision.gate import GateFeedback
from camd.vision.motion import MotionDetector, MotionGate
from camd.vision.offline import clip_frames
from camd.vision.pool import InferencePool
from tests.support.data import shared_data

WALKER_PX = 60
AT = (900, 500)
# A 60x25 px walker is 0.16% of a 1280x720 frame: under the gate's default min_area (0.2%). A camera
# looking far away needs a lower one (docs/performance.md); the pass itself needs only the region.
FAR_VIEW_MOTION = MotionConfig(min_area=0.0003)
# What docs/performance.md advises for a camera looking far away: motion measured on a 320 px wide
# copy (at 160 a walker under ~50 px is blurred away) and a smaller min_area (a 40 px walker changes
# ~0.02% of the frame).
FAR_CAMERA_MOTION = MotionConfig(min_area=0.0001, frame_width=320)


def people(detections: list[Detection], truth: Box, min_score: float = 0.5) -> list[Detection]:
    return [
        d for d in detections if d.label == "person" and d.score >= min_score and iou(d.box, truth) >= 0.4
    ]


@pytest.fixture(scope="module")
def vtest_walker(models_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vtest's first frame, its most confident person cut out)."""
    frame = next(itertools.islice(clip_frames(str(shared_data("video/vtest.avi"))), 0, None)).image
    reference = create_detector(DetectorConfig(runtime="opencv"), models_dir)
    person = max((d for d in reference.detect(frame) if d.label == "person"), key=lambda d: d.score)
    assert person.score >= 0.8
    x1, y1, x2, y2 = (int(v) for v in person.box)
    return frame, frame[y1:y2, x1:x2]


def scene(vtest_walker: tuple[np.ndarray, np.ndarray], walker_px: int) -> tuple[np.ndarray, np.ndarray, Box]:
    """(the 1280x720 background, the same with the walker scaled to `walker_px` tall at AT, his box)."""
    frame, crop = vtest_walker
    width = max(1, round(crop.shape[1] * walker_px / crop.shape[0]))
    small = cv2.resize(crop, (width, walker_px), interpolation=cv2.INTER_AREA)
    background = cv2.GaussianBlur(cv2.resize(frame, (1280, 720)), (0, 0), 3)
    image = background.copy()
    x, y = AT
    image[y : y + walker_px, x : x + width] = small
    return background, image, (x, y, x + width, y + walker_px)


def place(
    vtest_walker: tuple[np.ndarray, np.ndarray], walker_px: int, motion: MotionConfig = FAR_VIEW_MOTION
) -> tuple[np.ndarray, Box, list[Box]]:
    """The walker scaled to `walker_px` tall at AT in a 1280x720 frame, his box, and the moving regions
    camd's motion detector (`motion`) finds after the frame without him."""
    background, image, box = scene(vtest_walker, walker_px)
    detector = MotionDetector(motion)
    for _ in range(3):
        detector.update(background)
    regions = [tuple(float(v) for v in r) for r in detector.update(image).boxes]
    return image, box, regions  # type: ignore[return-value]


@pytest.fixture(scope="module")
def far_walker(vtest_walker: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, Box, list[Box]]:
    return place(vtest_walker, WALKER_PX)


@pytest.mark.shared_data
def test_far_pass_finds_the_walker_the_plain_pass_misses(
    models_dir: Path, far_walker: tuple[np.ndarray, Box, list[Box]]
) -> None:
    image, truth, regions = far_walker
    assert any(iou(r, truth) > 0.3 for r in regions), regions  # the motion detector saw him
    detector = create_detector(DetectorConfig(), models_dir)
    plain = detector.detect(image)
    assert people(plain, truth) == []  # too small for the first pass
    found = far_pass(detector, image, plain, regions, FarConfig())
    assert len(people(found, truth)) == 1, found
    assert found[: len(plain)] == plain  # the first pass's detections are kept as they were


@pytest.mark.shared_data
def test_far_pass_does_nothing_on_small_frames_or_when_off(
    models_dir: Path, far_walker: tuple[np.ndarray, Box, list[Box]]
) -> None:
    image, _, regions = far_walker
    detector = create_detector(DetectorConfig(), models_dir)
    plain = detector.detect(image)
    assert far_pass(detector, image, plain, regions, FarConfig(enabled=False)) is plain
    assert far_pass(detector, image, plain, regions, FarConfig(min_height=721)) is plain
    assert far_pass(detector, image, plain, [], FarConfig()) is plain


def test_regions_explained_by_a_detection_or_too_big_get_no_tile() -> None:
    walker = Detection("person", 0.9, (100.0, 100.0, 140.0, 200.0))
    regions: list[Box] = [
        (105.0, 110.0, 135.0, 190.0),  # the detected walker's own motion
        (600.0, 300.0, 625.0, 360.0),  # a far walker nobody detected
        (0.0, 0.0, 900.0, 700.0),  # walkers merged into one big blob: judged in tile-sized parts
        (50.0, 50.0, 55.0, 54.0),  # noise
    ]
    todo = unexplained_regions(regions[:2] + regions[3:], [walker], tile=320)
    assert todo == [(600.0, 300.0, 625.0, 360.0)]
    parts = unexplained_regions(regions[2:3], [], tile=320)
    assert len(parts) == 9 and all(r[2] - r[0] == 300 and abs(r[3] - r[1] - 233.3) < 0.1 for r in parts)
    # the part the walker covers is explained by him
    assert (
        len(unexplained_regions(regions[2:3], [Detection("person", 0.9, (0.0, 0.0, 300.0, 233.0))], 320)) == 8
    )
    (tile,) = tiles_for(todo, 1280, 720, tile=320, max_tiles=2)
    assert tile[2] - tile[0] == tile[3] - tile[1] == 150  # 2.5 x the region's 60 px
    assert tile[0] <= 600 and tile[2] >= 625 and tile[1] <= 300 and tile[3] >= 360
    # Clipped to the frame at its edge, at most max_tiles, one tile for regions that share it.
    edge = tiles_for([(1270.0, 700.0, 1280.0, 720.0)], 1280, 720, tile=320, max_tiles=2)
    assert edge == [(1152.0, 592.0, 1280.0, 720.0)]
    many = [(float(x), 10.0, float(x + 20), 60.0) for x in range(0, 1200, 200)]
    assert len(tiles_for(many, 1280, 720, tile=320, max_tiles=2)) == 2


@pytest.mark.shared_data
def test_a_40px_walker_needs_the_far_camera_motion_setting(
    models_dir: Path, vtest_walker: tuple[np.ndarray, np.ndarray]
) -> None:
    """At motion.frame_width 160 a 40 px walker makes no moving region at all (nothing for the far pass
    to look at); with the far-camera setting he does, and the far pass finds him."""
    detector = create_detector(DetectorConfig(), models_dir)
    image, truth, regions = place(vtest_walker, 40, MotionConfig(min_area=0.0001))
    assert regions == []
    image, truth, regions = place(vtest_walker, 40, FAR_CAMERA_MOTION)
    assert any(iou(r, truth) > 0.3 for r in regions), regions
    plain = detector.detect(image)
    assert people(plain, truth) == []
    assert len(people(far_pass(detector, image, plain, regions, FarConfig()), truth)) == 1


@pytest.mark.shared_data
def test_the_gate_measures_far_motion_for_the_far_pass_alone(
    models_dir: Path, vtest_walker: tuple[np.ndarray, np.ndarray]
) -> None:
    """With the default motion settings the gate sees no motion from a 40 px walker; its second, finer
    measurement (far.motion_width 320) gives the far pass his region, which finds him. What the gate
    decides and the regions it reports for itself are those of a gate without the far pass."""
    background, image, truth = scene(vtest_walker, 40)
    plain_gate, far_gate = MotionGate(MotionConfig()), MotionGate(MotionConfig(), far=FarConfig())
    frames = [background] * 4 + [image]  # the walker appears on the 5-s refresh
    times = [0.0, 1.0, 2.0, 3.0, 5.0]
    decisions = [
        [gate.should_detect(frame, t, []) for frame, t in zip(frames, times, strict=True)]
        for gate in (plain_gate, far_gate)
    ]
    assert decisions[0] == decisions[1] == [True, False, False, False, True]
    assert plain_gate.last_regions == far_gate.last_regions == []  # nothing moves at 160 px
    assert plain_gate.last_far_regions is None
    regions = far_gate.last_far_regions
    assert regions is not None and any(iou(r, truth) > 0.3 for r in regions), regions
    detector = create_detector(DetectorConfig(), models_dir)
    plain = detector.detect(image)
    assert people(plain, truth) == []
    assert len(people(far_pass(detector, image, plain, regions, FarConfig()), truth)) == 1
    # Frames shorter than far.min_height are not measured a second time.
    small_gate = MotionGate(MotionConfig(), far=FarConfig(min_height=721))
    for frame, t in zip(frames, times, strict=True):
        small_gate.should_detect(frame, t, [])
    assert small_gate.last_far_regions is None


@pytest.mark.shared_data
def test_a_small_track_the_first_pass_lost_gets_a_tile(
    models_dir: Path, vtest_walker: tuple[np.ndarray, np.ndarray]
) -> None:
    """A 45 px walker standing still (no moving region at all) whose track predicts him a little off:
    the tile on the predicted box finds him; with track tiles off, or a predicted box too tall to be far
    away, there is no tile; a track the first pass found again needs none."""
    _, image, truth = scene(vtest_walker, 45)
    predicted: Box = (truth[0] + 6, truth[1] - 4, truth[2] + 6, truth[3] - 4)
    detector = create_detector(DetectorConfig(), models_dir)
    plain = detector.detect(image)
    assert people(plain, truth) == []
    assert far_pass(detector, image, plain, [], FarConfig()) is plain  # nothing moves
    found = far_pass(detector, image, plain, [], FarConfig(), hints=[predicted])
    assert len(people(found, truth)) == 1, found
    assert found[: len(plain)] == plain
    assert far_pass(detector, image, plain, [], FarConfig(track_height=0.0), hints=[predicted]) is plain
    tall: Box = (truth[0], truth[1] - 60, truth[2] + 20, truth[3] + 60)  # 165 px: the first pass's business
    assert far_pass(detector, image, plain, [], FarConfig(), hints=[tall]) is plain
    refound = [Detection("person", 0.8, truth)]
    assert track_regions([predicted], refound, 1280, 720, 0.125) == []
    assert track_regions([predicted], [], 1280, 720, 0.125) == [predicted]


def test_the_gate_hands_the_far_pass_its_regions_and_the_tracks_predicted_boxes() -> None:
    """GateFeedback gives the far pass, with each frame it sends to the detector, the gate's finer far
    regions and every open track's box predicted for that frame (moved on by its velocity)."""
    feedback = GateFeedback(MotionGate(MotionConfig(), far=FarConfig()), replay=False)
    feedback.moved({7: ((100.0, 100.0, 120.0, 150.0), 0.0)}, 0.0)
    feedback.moved({7: ((110.0, 100.0, 130.0, 150.0), 1.0)}, 1.0)  # 10 px/s, smoothed to 5 px/s
    feedback.publish(1)
    image = np.zeros((720, 1280, 3), np.uint8)
    detect, regions, far = feedback.should_detect(Frame("c", 0, 1.4, image), waiting=lambda: True)
    assert detect and regions is not None  # the first frame
    assert isinstance(far, FarLook) and far.regions is not None
    (hint,) = far.hints
    assert hint == pytest.approx((112.0, 100.0, 132.0, 150.0))
    off = GateFeedback(MotionGate(MotionConfig(), far=FarConfig(enabled=False)), replay=False)
    assert off.should_detect(Frame("c", 0, 0.0, image), waiting=lambda: True)[2] is None


def test_tiles_are_picked_to_cover_the_most_regions() -> None:
    """Three far walkers close together and one large blob elsewhere, one tile to spend: it goes where
    it covers three regions, not over the largest one (the order before); with more tiles, each
    region is in one."""
    cluster: list[Box] = [
        (400.0, 300.0, 420.0, 340.0),
        (430.0, 300.0, 450.0, 340.0),
        (460.0, 305.0, 478.0, 340.0),
    ]
    big: Box = (900.0, 100.0, 960.0, 200.0)
    regions = [big, *cluster]  # largest first, as unexplained_regions gives them
    (tile,) = tiles_for(regions, 1280, 720, tile=320, max_tiles=1)
    assert all(r[0] >= tile[0] and r[2] <= tile[2] and r[1] >= tile[1] and r[3] <= tile[3] for r in cluster)
    both = tiles_for(regions, 1280, 720, tile=320, max_tiles=2)
    assert len(both) == 2 and both[0] == tile and both[1][0] <= big[0] and both[1][2] >= big[2]
    assert len(tiles_for(regions, 1280, 720, tile=320, max_tiles=5)) == 2  # every region is in a tile


@pytest.mark.shared_data
def test_the_inference_pool_runs_the_far_pass_with_what_the_gate_handed_it(
    models_dir: Path, vtest_walker: tuple[np.ndarray, np.ndarray]
) -> None:
    """A frame queued with a FarLook (no moving region, the walker's predicted track box): the pool's
    worker runs the far pass on it and the walker comes back with the frame's detections."""
    _, image, truth = scene(vtest_walker, 45)
    predicted: Box = (truth[0] + 6, truth[1] - 4, truth[2] + 6, truth[3] - 4)
    pool = InferencePool([create_detector(DetectorConfig(), models_dir)], far=FarConfig()).start()
    try:
        lane = pool.lane("c", capacity=4, drop_oldest=False)
        assert lane.submit(Frame("c", 0, 0.0, image), True, regions=(), far=FarLook((), (predicted,)))
        assert lane.submit(Frame("c", 1, 0.2, image), True, regions=(), far=FarLook((), ()))
        lane.close()
        items = [lane.next(30.0), lane.next(30.0)]
    finally:
        pool.stop()
    assert all(item is not None for item in items)
    assert len(people(items[0].detections, truth)) == 1  # type: ignore[union-attr]
    assert people(items[1].detections, truth) == []  # type: ignore[union-attr]  # nothing to look at


@pytest.mark.shared_data
@pytest.mark.parametrize("wake_every_s", [1.0, 0.0])
def test_a_lone_far_walker_wakes_the_detector_through_the_far_motion(
    models_dir: Path, vtest_walker: tuple[np.ndarray, np.ndarray], wake_every_s: float
) -> None:
    """A 50 px walker crossing a quiet, noisy 1280x720 scene at 5 frames/s, default motion settings: too
    small for the gate's own motion. With `far.wake_every_s` (the default 1 s) the far pass's finer
    motion wakes the detector within about a second of his appearing and the far pass finds him; with
    it off the detector sleeps until the gate's 5-s refresh."""
    frame, crop = vtest_walker
    width = max(1, round(crop.shape[1] * 50 / crop.shape[0]))
    small = cv2.resize(crop, (width, 50), interpolation=cv2.INTER_AREA)
    background = cv2.GaussianBlur(cv2.resize(frame, (1280, 720)), (0, 0), 3)
    assert FarConfig().wake_every_s == 1.0
    far_config = FarConfig(wake_every_s=wake_every_s)
    feedback = GateFeedback(MotionGate(MotionConfig(), far=far_config), replay=False)
    detector = create_detector(DetectorConfig(), models_dir)
    rng = np.random.default_rng(3)
    woken: list[float] = []
    found: list[float] = []
    for index in range(20):  # 4 s; he walks in at 1 s, 6 px a frame
        t = index / 5
        image = np.clip(background + rng.normal(0.0, 1.5, background.shape), 0, 255).astype(np.uint8)
        truth: Box | None = None
        if t >= 1.0:
            x, y = 600 + 6 * (index - 5), 500
            image[y : y + 50, x : x + width] = small
            truth = (x, y, x + width, y + 50)
        detect, regions, far = feedback.should_detect(Frame("c", index, t, image), waiting=lambda: True)
        if not detect or index == 0:
            continue
        woken.append(t)
        assert far is not None and far.regions is not None
        plain = detector.detect(image)
        feedback.answered(regions or ())
        feedback.publish(index)
        if truth is not None and people(far_pass(detector, image, plain, far.regions, far_config), truth):
            found.append(t)
    if wake_every_s:
        assert woken and 1.0 <= woken[0] <= 2.0, woken  # within about a second of his appearing
        assert found and found[0] <= 2.0, (woken, found)
        assert all(b - a >= 1.0 - 1e-6 for a, b in itertools.pairwise(woken)), woken  # at most once a second
        assert feedback.gate.reasons["far motion"] == len(woken)
    else:
        assert woken == [], woken  # the gate's own motion never sees him; no refresh within 4 s
