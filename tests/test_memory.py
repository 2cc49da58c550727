"""The memory on a real Qdrant local store, fed by real models on real photos."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import models as qm

from camd.identity import enroll
from camd.identity.memory import PEOPLE, PROTOTYPES, Memory, MemoryLockedError, UnknownPersonError
from camd.identity.model_files import face_photo
from tests.support.identity_data import after_for, read_image, track_from_image

pytest_plugins = ["tests.support.identity"]

NOW = 1_800_000_000.0


def _photos(tmp_path: Path, models_dir: Path, *names: str) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(face_photo(models_dir, name).read_bytes())
    return folder


def _points(memory: Memory, collection: str, person_id: str) -> list[Any]:
    flt = qm.Filter(must=[qm.FieldCondition(key="person_id", match=qm.MatchValue(value=person_id))])
    physical = memory.collection(collection)
    return memory.client.scroll(physical, scroll_filter=flt, limit=1000, with_vectors=True)[0]


def test_forget_removes_every_vector_and_crop(tmp_path: Path, models_dir: Path, service_factory: Any) -> None:
    service = service_factory()
    enroll.enroll_photos(service, "obama", "family", _photos(tmp_path, models_dir, "obama.jpg", "obama2.jpg"))
    photo = read_image(face_photo(models_dir, "obama3.jpg"))
    decision = service.finalise(track_from_image(service, photo), after_for("ev-1", at=NOW), NOW)
    assert decision is not None and decision.name == "obama"
    crop = Path(service.memory.sighting("ev-1").payload["crop"])
    assert crop.is_file()
    again = read_image(face_photo(models_dir, "obama2.jpg"))
    service.finalise(track_from_image(service, again), after_for("ev-2", at=NOW), NOW)
    enroll.correct(service, "ev-2", not_name="obama")  # a negative prototype must go too
    assert any(h.payload["negative"] for h in service.memory.prototypes("obama"))
    assert _points(service.memory, PROTOTYPES, "obama") and service.memory.sightings("obama")

    result = enroll.forget(service, "obama")

    assert result["prototypes"] >= 5 and result["crops"] == 1
    for collection in (PEOPLE, PROTOTYPES):
        assert _points(service.memory, collection, "obama") == [], collection
    assert service.memory.sightings("obama") == []
    face = service.extractors.face.faces(photo)[0].embedding  # type: ignore[union-attr]
    assert all(h.person_id != "obama" for h in service.memory.search(PROTOTYPES, "face", face, NOW))
    assert not crop.exists()
    with pytest.raises(UnknownPersonError, match="no one called 'obama'"):
        enroll.forget(service, "obama")


def test_a_stranger_seen_again_keeps_the_same_unknown_id(models_dir: Path, service_factory: Any) -> None:
    service = service_factory()
    first = service.finalise(
        track_from_image(service, read_image(face_photo(models_dir, "obama.jpg"))),
        after_for("a", at=NOW),
        NOW,
    )
    again = service.finalise(
        track_from_image(service, read_image(face_photo(models_dir, "obama2.jpg"))),
        after_for("b", at=NOW + 60), NOW + 60,
    )  # fmt: skip
    other = service.finalise(
        track_from_image(service, read_image(face_photo(models_dir, "biden.jpg"))),
        after_for("c", at=NOW + 120), NOW + 120,
    )  # fmt: skip
    assert first is not None and again is not None and other is not None
    assert first.identity_class == again.identity_class == other.identity_class == "stranger"
    assert first.name is None and first.global_id == again.global_id == "unknown-1"
    assert other.global_id == "unknown-2"
    assert service.memory.person("unknown-1")["seen_count"] == 2  # type: ignore[index]
    assert service.memory.sighting("b").payload["global_id"] == "unknown-1"
    # Strangers are not listed as enrolled people, but are with --strangers.
    assert enroll.people_list(service) == []
    assert {p["person_id"] for p in enroll.people_list(service, include_strangers=True)} == {
        "unknown-1",
        "unknown-2",
    }


def _enroll_face_only(service: Any, models_dir: Path, name: str, photo: str) -> None:
    """An enrolled person known by the face alone, so a body match can only come from what camd learns."""
    service.memory.save_person({"person_id": name, "name": name, "role": "family", "kind": "person"})
    face = service.extractors.face.faces(read_image(face_photo(models_dir, photo)))[0].embedding
    service.memory.add_prototype(name, {"face": face}, source="test")


def test_same_day_prototype_recognises_from_behind_until_it_expires(
    models_dir: Path, service_factory: Any
) -> None:
    service = service_factory(same_day_hours=6)
    _enroll_face_only(service, models_dir, "obama", "obama.jpg")
    photo = read_image(face_photo(models_dir, "obama2.jpg"))
    seen = service.finalise(track_from_image(service, photo), after_for("front", at=NOW), NOW)
    assert seen is not None and seen.name == "obama" and seen.confidence >= 0.9
    learned = [h for h in service.memory.prototypes("obama") if h.payload["source"] == "same_day"]
    assert len(learned) == 1 and learned[0].payload["expires_at"] == pytest.approx(NOW + 6 * 3600)

    behind = track_from_image(service, photo, face=False)  # same clothes, no face: from behind
    later = NOW + 2 * 3600
    today = service.finalise(behind, after_for("back", at=later), later)
    assert today is not None and today.name == "obama", today
    assert today.evidence["face"] is None and today.evidence["body"] > 0.5  # type: ignore[operator]

    tomorrow = NOW + 7 * 3600  # the front sighting's prototype has expired; 'back' learned none
    gone = service.finalise(
        track_from_image(service, photo, face=False), after_for("next", at=tomorrow), tomorrow
    )
    assert gone is not None and gone.name is None and gone.identity_class == "stranger"
    service.prune(tomorrow)
    assert not [h for h in service.memory.prototypes("obama") if h.payload["source"] == "same_day"]


def test_retention_prunes_strangers_and_their_crops_but_keeps_family(
    models_dir: Path, service_factory: Any
) -> None:
    service = service_factory(retention_days=2)
    _enroll_face_only(service, models_dir, "biden", "biden.jpg")
    stranger = service.finalise(
        track_from_image(service, read_image(face_photo(models_dir, "obama.jpg"))),
        after_for("s", at=NOW),
        NOW,
    )
    family = service.finalise(
        track_from_image(service, read_image(face_photo(models_dir, "biden.jpg"))),
        after_for("f", at=NOW),
        NOW,
    )
    assert stranger is not None and stranger.global_id == "unknown-1"
    assert family is not None and family.name == "biden"
    crop = Path(service.memory.sighting("s").payload["crop"])
    assert crop.is_file()

    # A day later only biden's same-day prototype (12 h) has expired; the stranger is kept 2 days.
    assert service.prune(NOW + 86400) == {
        "crops": 0, "sightings": 0, "prototypes": 1, "people": 0, "strangers_forgotten": 0
    }
    counts = service.prune(NOW + 3 * 86400)

    assert counts["sightings"] == 1 and counts["crops"] == 1 and counts["people"] == 1
    assert counts["prototypes"] == 1  # the stranger's face stopped linking with its retention
    assert not service.memory.prototypes("unknown-1")
    assert not crop.exists() and service.memory.person("unknown-1") is None
    with pytest.raises(UnknownPersonError):
        service.memory.sighting("s")
    assert service.memory.sighting("f").payload["identity"] == "biden"
    assert Path(service.memory.sighting("f").payload["crop"]).is_file()


def test_store_and_crops_are_owner_only_and_the_store_is_locked_while_open(
    models_dir: Path, service_factory: Any
) -> None:
    service = service_factory()
    service.finalise(
        track_from_image(service, read_image(face_photo(models_dir, "obama.jpg"))),
        after_for("p", at=NOW),
        NOW,
    )
    crop = Path(service.memory.sighting("p").payload["crop"])
    assert stat.S_IMODE(crop.stat().st_mode) == 0o600
    assert stat.S_IMODE(crop.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(service.config.crops_path.stat().st_mode) == 0o700
    assert stat.S_IMODE(service.config.store_path.stat().st_mode) == 0o700
    with pytest.raises(MemoryLockedError, match="held by another camd process"):
        Memory(service.config)
    service.close()
    for path in service.config.store_path.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) in (0o600, 0o700), path
    for path in service.config.state_dir.glob("sightings.sqlite3*"):  # the sighting log and its WAL
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    reopened = Memory(service.config)  # and it all survives a restart
    try:
        assert reopened.sighting("p").vectors["face"].shape == (128,)
        assert np.isclose(np.linalg.norm(reopened.sighting("p").vectors["body"]), 1.0, atol=1e-3)
    finally:
        reopened.close()


def test_a_command_with_another_models_folder_does_not_convert_the_memory(
    tmp_path: Path, models_dir: Path, service_factory: Any, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`camd people list --state-dir S` without the daemon's models folder finds no OSNet there: it says
    so instead of moving the memory to MobileNetV2's space (which would re-embed everyone twice)."""
    from camd.cli import main as camd_main
    from camd.identity.layout import BODY_SPACE_KEY

    service = service_factory()
    enroll.enroll_photos(service, "obama", "family", _photos(tmp_path, models_dir, "obama.jpg"))
    space = service.memory.body_space
    state = service.config.state_dir
    service.close()
    if space.startswith("mobilenetv2"):
        pytest.skip("the shipped OSNet is not prepared here: both sides resolve MobileNetV2")

    code = camd_main(["people", "list", "--state-dir", str(state), "--models-dir", str(tmp_path / "empty")])
    error = capsys.readouterr().err
    assert code == 1 and f"holds body vectors of {space}" in error and "--models-dir" in error
    assert camd_main(["people", "list", "--state-dir", str(state), "--models-dir", str(models_dir)]) == 0
    assert capsys.readouterr().out.startswith("obama")
    reopened = Memory(service.config)
    try:
        assert (reopened.load_state(BODY_SPACE_KEY) or {}).get("space") == space
    finally:
        reopened.close()
