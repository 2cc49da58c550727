"""The evaluation functions behind `camd eval`: exact on hand-made inputs, sane on the real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from camd.eval import reid as ev
from camd.identity.evidence.body import BodyAppearanceEmbedder
from camd.identity.evidence.colour import ClothingColourDescriptor
from camd.identity.evidence.face import FaceEmbedder
from camd.identity.model_files import model_file
from tests.support.data import shared_data


def test_rank1_and_map_by_hand() -> None:
    # Query 0 (person 1): its two matches rank 1st and 3rd -> AP (1/1 + 2/3) / 2.
    # Query 1 (person 2): its one match ranks 2nd -> AP 1/2, and rank-1 is a miss.
    similarity = np.array([[0.9, 0.5, 0.1], [0.8, 0.7, 0.2]])
    result = ev.rank1_and_map(similarity, np.array([1, 2]), np.array([1, 2, 1]))
    assert result["rank1"] == pytest.approx(0.5)
    assert result["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1 / 2) / 2)


def test_tar_at_far_by_hand() -> None:
    impostor = np.linspace(0.0, 0.99, 100)  # 100 strangers: 1% FAR lets exactly one reach the threshold
    genuine = np.array([0.995, 0.985, 0.5, -np.inf])
    tar, threshold = ev.tar_at_far(genuine, impostor, far=0.01)
    assert 0.98 < threshold <= 0.99 and tar == pytest.approx(0.5)
    tar0, threshold0 = ev.tar_at_far(genuine, impostor, far=0.0)
    assert threshold0 > 0.99 and tar0 == pytest.approx(0.25)


def test_stranger_link_rule_by_hand() -> None:
    # The best must reach the threshold and beat the runner-up by the margin; otherwise a new id.
    assert ev._link(np.array([0.85, 0.95]), threshold=0.84, margin=0.08) == 1
    assert ev._link(np.array([0.90, 0.95]), threshold=0.84, margin=0.08) is None  # too close to call
    assert ev._link(np.array([0.83]), threshold=0.84, margin=0.0) is None
    assert ev._link(np.array([0.84]), threshold=0.84, margin=0.5) == 0  # no runner-up: any margin holds
    assert ev._link(np.array([]), threshold=0.0, margin=0.0) is None
    impostor = np.linspace(0.0, 0.99, 100)
    assert 0.98 < ev.threshold_at_far(impostor, 0.01) <= 0.99


def test_open_set_accepts_everyone_enrolled_when_probes_are_the_enrolled_crops() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.repeat(np.arange(10), 4)
    result = ev.evaluate_open_set(vectors, ids, vectors, ids, splits=5)
    assert result["tar_per_crop"] == pytest.approx(1.0)  # a probe equal to its prototype scores 1.0


def test_open_set_is_chance_level_for_random_vectors() -> None:
    rng = np.random.default_rng(1)
    query, gallery = rng.normal(size=(80, 64)), rng.normal(size=(80, 64))
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    ids = np.repeat(np.arange(20), 4)
    assert ev.evaluate_open_set(query, ids, gallery, ids, splits=5)["tar_per_crop"] < 0.1


@pytest.mark.shared_data
def test_face_verification_on_the_shared_photos(models_dir: Path) -> None:
    faces = FaceEmbedder(model_file(models_dir, "face_shape_5"), model_file(models_dir, "face_resnet"))
    result = ev.evaluate_faces(faces, shared_data("faces"))
    assert result["people"] == 5 and result["photos"] >= 10 and not result["photos_without_face"]
    assert result["accuracy"] >= 0.95
    assert result["distance_same"]["p95"] < result["distance_different"]["p5"]


@pytest.mark.slow
@pytest.mark.shared_data
def test_body_reid_figures_on_reid_train(models_dir: Path) -> None:
    data = ev.load_reid(shared_data("reid/train"))
    body, colour = (
        BodyAppearanceEmbedder(model_file(models_dir, "appearance_onnx")),
        ClothingColourDescriptor(),
    )
    result = ev.evaluate_reid(data, [body, colour], [("fused", {body.name: 0.9, colour.name: 0.1})])
    assert result["identities"] == 62 and result["queries"] == result["gallery"] == 496
    # 62 identities: chance is 0.016. Measured 0.55 (docs/identity.md); a broken preprocessing (BGR fed
    # as RGB, no normalisation, global pooling) falls below 0.35.
    assert result[body.name]["rank1"] > 0.45
    assert result[body.name]["rank1"] > result[colour.name]["rank1"] > 1 / 62
    assert 0.0 < result["fused"]["mAP"] <= 1.0


def test_load_reid_names_a_wrong_folder(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="re-ID folder"):
        ev.load_reid(tmp_path / "absent")
    (tmp_path / "001").mkdir()
    with pytest.raises(ValueError, match="01_"):
        ev.load_reid(tmp_path)


@pytest.mark.slow
@pytest.mark.shared_data
def test_centring_on_other_people_raises_open_set_accepts(models_dir: Path) -> None:
    data = ev.load_reid(shared_data("reid/train"))
    result = ev.evaluate_body_folds(
        data,
        BodyAppearanceEmbedder(model_file(models_dir, "appearance_onnx")),
        ClothingColourDescriptor(),
        colour_weights=(0.1,),
    )
    plain, centred = result["colour_0.1"], result["colour_0.1_centred"]
    # Measured 0.09 -> 0.22 per crop and rank-1 0.62 -> 0.72 (docs/identity.md).
    assert centred["tar_per_crop"] > plain["tar_per_crop"] + 0.05
    assert centred["rank1"] > plain["rank1"]
