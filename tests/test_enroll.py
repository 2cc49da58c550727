"""Enrollment from photos and clips, the people commands and their errors, through the real CLI too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from camd.cli import main
from camd.identity import enroll
from camd.identity.memory import UnknownPersonError
from camd.identity.model_files import face_photo
from camd.types import TrackSnapshot
from tests.support.data import shared_data
from tests.support.identity_data import read_image, track_from_image

pytest_plugins = ["tests.support.identity"]

NOW = 1_800_000_000.0


def _folder(tmp_path: Path, models_dir: Path, name: str, photos: list[str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for photo in photos:
        (folder / photo).write_bytes(face_photo(models_dir, photo).read_bytes())
    return folder


def test_photos_of_one_person_recognise_another_photo_of_them_and_not_someone_else(
    tmp_path: Path, models_dir: Path, service_factory: Any
) -> None:
    service = service_factory()
    result = enroll.enroll_photos(
        service, "obama", "family", _folder(tmp_path, models_dir, "obama", ["obama.jpg", "obama2.jpg"])
    )
    assert result["added"]["face"] == 2 and not result["skipped"]

    same = service.matcher.decide(
        track_from_image(service, read_image(face_photo(models_dir, "obama3.jpg"))).vectors(), NOW
    )
    other = service.matcher.decide(
        track_from_image(service, read_image(face_photo(models_dir, "biden.jpg"))).vectors(), NOW
    )
    assert same.name == "obama" and same.confidence > 0.9
    assert other.name is None and other.identity_class == "stranger"


@pytest.mark.shared_data
def test_enrolled_households_from_the_shared_face_photos(tmp_path: Path, service_factory: Any) -> None:
    """Each person of faces/examples/knn_examples/train enrolled from their photos; every single-face
    probe photo in test/ is named right (Jon Snow is played by Kit Harington)."""
    root = shared_data("faces/examples/knn_examples")
    service = service_factory()
    people = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    for person in people:
        enroll.enroll_photos(service, person.replace("_", "-"), "visitor", root / "train" / person)
    probes = []
    for photo in sorted((root / "test").iterdir()):
        image = read_image(photo)
        if len(service.extractors.face.faces(image)) != 1:  # type: ignore[union-attr]
            continue  # group photos: one track is one person
        decision = service.matcher.decide(track_from_image(service, image, body=False).vectors(), NOW)
        probes.append((photo.stem, decision.name))
    expected = {"alex_lacamoire1": "alex-lacamoire", "johnsnow_test1": "kit-harington", "obama1": "obama"}
    assert len(probes) >= 3
    for stem, name in probes:
        assert name == expected.get(stem, name) and name is not None, (stem, name)
    assert {stem for stem, _ in probes} >= set(expected)


def test_bad_photos_get_clear_errors(tmp_path: Path, models_dir: Path, service_factory: Any) -> None:
    service = service_factory()
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "notes.jpg").write_text("not an image")
    cv2.imwrite(str(folder / "wall.png"), np.full((240, 320, 3), 128, np.uint8))  # no person, no face
    with pytest.raises(enroll.EnrollmentError) as error:
        enroll.enroll_photos(service, "anna", "family", folder)
    assert "notes.jpg: not an image camd can read" in str(error.value)
    assert "wall.png: no person or face found" in str(error.value)
    assert service.memory.person("anna") is None  # nothing half-enrolled
    with pytest.raises(enroll.EnrollmentError, match="no such file or folder"):
        enroll.enroll_photos(service, "anna", "family", tmp_path / "absent")
    with pytest.raises(ValueError, match="camd's own stranger ids"):
        enroll.enroll_photos(service, "unknown-3", "family", folder)

    # One good photo among bad ones: enrolled, the bad one reported.
    (folder / "obama.jpg").write_bytes(face_photo(models_dir, "obama.jpg").read_bytes())
    result = enroll.enroll_photos(service, "anna", "family", folder)
    assert result["photos_used"] == [str(folder / "obama.jpg")] and len(result["skipped"]) == 2


def test_unknown_names_and_sightings_are_clear_errors(service_factory: Any) -> None:
    service = service_factory()
    with pytest.raises(UnknownPersonError, match="no one called 'zoe'"):
        enroll.person_show(service, "zoe")
    with pytest.raises(UnknownPersonError, match="no sighting 'nope'"):
        enroll.correct(service, "nope", is_name="zoe")
    with pytest.raises(UnknownPersonError):
        enroll.rename(service, "zoe", "zed")


def test_a_clip_with_several_vehicles_asks_for_a_track_then_enrolls_it(
    tmp_path: Path, models_dir: Path, service_factory: Any
) -> None:
    service = service_factory()
    clip = models_dir / "demo_bikes_clip" / "bikes.mp4"
    with pytest.raises(enroll.TrackChoiceNeeded) as choice:
        enroll.enroll_clip(
            service, "our-car", "family", clip, kind="vehicle", end_s=4.0, listing_dir=tmp_path / "l"
        )
    tracks = choice.value.tracks
    assert len(tracks) >= 2 and "--track" in str(choice.value)
    for row in tracks:
        crop = cv2.imread(row["crop"])
        assert crop is not None and crop.shape[0] > 8
    chosen = tracks[0]["track"]

    result = enroll.enroll_clip(
        service,
        "our-car",
        "family",
        clip,
        track=chosen,
        kind="vehicle",
        end_s=4.0,
        listing_dir=tmp_path / "l",
    )

    assert result["added"]["vehicle"] == 1 and result["kind"] == "vehicle"
    listed = enroll.people_list(service)
    assert [(p["name"], p["kind"], p["prototypes"].get("vehicle")) for p in listed] == [
        ("our-car", "vehicle", 1)
    ]
    with pytest.raises(enroll.EnrollmentError, match="not among the clip's vehicle tracks"):
        enroll.enroll_clip(service, "our-car", "family", clip, track=999, kind="vehicle", end_s=4.0)


def test_cli_enroll_people_correct_forget(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--state-dir", str(tmp_path / "state"), "--models-dir", str(models_dir)]
    photos = _folder(tmp_path, models_dir, "obama", ["obama.jpg", "obama2.jpg"])
    assert main(["enroll", "obama", "--role", "visitor", "--photos", str(photos), *store]) == 0
    assert "enrolled obama (visitor person): face 2, body 2" in capsys.readouterr().out

    assert main(["people", "list", "--json", *store]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "obama" and listed[0]["prototypes"]["face"] == 2

    assert main(["people", "rename", "obama", "barack", *store]) == 0
    assert main(["people", "show", "obama", *store]) == 1
    assert "no one called 'obama'" in capsys.readouterr().err
    assert main(["correct", "missing-sighting", "--not", "barack", *store]) == 1
    assert "no sighting 'missing-sighting'" in capsys.readouterr().err
    assert main(["enroll", "x", "--photos", str(tmp_path / "nowhere"), *store]) == 1
    assert "no such file or folder" in capsys.readouterr().err

    assert main(["forget", "barack", *store]) == 0
    assert "forgot barack: 4 prototypes" in capsys.readouterr().out
    assert main(["people", "list", *store]) == 0
    assert "nobody enrolled yet" in capsys.readouterr().out


def test_cli_says_the_daemon_holds_the_store(tmp_path: Path, models_dir: Path, service_factory: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    service = service_factory()  # holds <tmp_path>/state/qdrant as the daemon would
    state = str(service.config.state_dir)
    assert main(["people", "list", "--state-dir", state, "--models-dir", str(models_dir)]) == 1
    assert "held by another camd process (the running daemon?)" in capsys.readouterr().err


def test_enroll_from_a_past_sighting_takes_over_the_stranger(models_dir: Path, service_factory: Any) -> None:
    service = service_factory()
    look = track_from_image(service, read_image(face_photo(models_dir, "obama.jpg")))
    seen = service.finalise(look, _after("door-1"), NOW)
    assert seen is not None and seen.global_id == "unknown-1"

    result = enroll.enroll_sighting(service, "barack", "visitor", "door-1")

    assert result["added"]["face"] == 1 and result["added"]["body"] == 1
    assert service.memory.person("unknown-1") is None  # its only sighting now belongs to barack
    assert service.memory.sighting("door-1").payload["identity"] == "barack"
    later = service.matcher.decide(
        track_from_image(service, read_image(face_photo(models_dir, "obama2.jpg"))).vectors(), NOW + 60
    )
    assert later.name == "barack" and later.identity_class == "visitor"
    with pytest.raises(UnknownPersonError, match="no sighting"):
        enroll.enroll_sighting(service, "barack", "visitor", "door-2")


def _after(event_id: str) -> TrackSnapshot:
    from tests.support.identity_data import after_for

    return after_for(event_id, at=NOW)
