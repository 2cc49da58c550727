"""The open-set matcher on vectors from real models: face decides, vetoes, negative feedback, gait."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from camd.identity import enroll
from camd.identity.evidence.gait import GaitSignature
from camd.identity.matcher import TrackVectors, shape_list
from camd.identity.model_files import face_photo
from tests.support.identity_data import after_for, read_image, track_from_image

pytest_plugins = ["tests.support.identity"]

NOW = 1_800_000_000.0


def _family(service: Any, name: str, models_dir: Path, photo: str, body: bool = False) -> None:
    service.memory.save_person({"person_id": name, "name": name, "role": "family", "kind": "person"})
    evidence = track_from_image(service, read_image(face_photo(models_dir, photo)), body=body)
    vectors = evidence.vectors()
    service.memory.add_prototype(name, vectors.stored_vectors(), source="test")


def test_a_confident_face_decides_and_confidence_follows_distance(
    models_dir: Path, service_factory: Any
) -> None:
    service = service_factory()
    _family(service, "obama", models_dir, "obama.jpg")
    close = service.matcher.decide(
        track_from_image(service, read_image(face_photo(models_dir, "obama2.jpg"))).vectors(), NOW
    )
    far = service.matcher.decide(
        track_from_image(service, read_image(face_photo(models_dir, "biden.jpg"))).vectors(), NOW
    )
    assert close.name == "obama" and close.identity_class == "family" and close.global_id == "obama"
    assert close.confidence > 0.9 and close.evidence["face"] > 0.9  # type: ignore[operator]
    assert far.name is None and far.identity_class == "stranger" and far.global_id is None
    assert far.confidence > 0.9  # sure it is nobody we know
    identity = close.identity()
    assert set(identity.evidence) == {"face", "body", "gait"} and identity.confidence == round(
        close.confidence, 3
    )


def test_a_different_face_vetoes_a_body_match(models_dir: Path, service_factory: Any) -> None:
    service = service_factory()
    _family(service, "obama", models_dir, "obama.jpg", body=True)
    obama = track_from_image(service, read_image(face_photo(models_dir, "obama.jpg")))
    biden_face = track_from_image(service, read_image(face_photo(models_dir, "biden.jpg")), body=False)
    # Obama's own body with Biden's face: the body says obama, the face says someone else.
    mixed = TrackVectors(kind="person", faces=biden_face.vectors().faces, **_body_of(obama.vectors()))
    assert (
        service.matcher.decide(TrackVectors(kind="person", **_body_of(obama.vectors())), NOW).name == "obama"
    )
    assert service.matcher.decide(mixed, NOW).name is None


def _body_of(vectors: TrackVectors) -> dict[str, Any]:
    return {"body": vectors.body, "colour": vectors.colour}


def test_not_name_feedback_vetoes_that_name(models_dir: Path, service_factory: Any) -> None:
    service = service_factory()
    _family(service, "obama", models_dir, "obama.jpg")
    look = track_from_image(service, read_image(face_photo(models_dir, "obama2.jpg")))
    first = service.finalise(look, after_for("wrong", at=NOW), NOW)
    assert first is not None and first.name == "obama"

    result = enroll.correct(service, "wrong", not_name="obama")

    assert result["negative_added"]["face"] == 1
    assert service.memory.sighting("wrong").payload.get("identity") is None
    again = service.matcher.decide(look.vectors(), NOW + 10)
    assert again.name is None and again.identity_class == "stranger"
    # The veto is specific: a clearly different look of obama still matches him.
    other = service.matcher.decide(
        track_from_image(service, read_image(face_photo(models_dir, "obama.jpg"))).vectors(), NOW + 10
    )
    assert other.name == "obama"


def test_is_name_correction_teaches_a_stranger_s_look(models_dir: Path, service_factory: Any) -> None:
    service = service_factory()
    _family(service, "biden", models_dir, "biden.jpg")
    look = track_from_image(service, read_image(face_photo(models_dir, "obama.jpg")))
    first = service.finalise(look, after_for("s1", at=NOW), NOW)
    assert first is not None and first.global_id == "unknown-1"
    service.memory.save_person({"person_id": "barack", "name": "barack", "role": "visitor", "kind": "person"})

    enroll.correct(service, "s1", is_name="barack")

    payload = service.memory.sighting("s1").payload
    assert payload["identity"] == "barack" and payload.get("expires_at") is None
    later = service.matcher.decide(
        track_from_image(service, read_image(face_photo(models_dir, "obama2.jpg"))).vectors(), NOW + 60
    )
    assert later.name == "barack" and later.identity_class == "visitor"


def test_gait_alone_never_decides(service_factory: Any) -> None:
    service = service_factory()
    service.memory.save_person({"person_id": "anna", "name": "anna", "role": "family", "kind": "person"})
    proportions = {"head_neck": 0.15, "torso": 0.32, "thigh": 0.25, "shin": 0.24, "upper_arm": 0.17}
    signature = GaitSignature(proportions=proportions, proportion_frames=20, frames=20)
    service.memory.add_prototype("anna", {}, source="test", shape=shape_list(signature))
    decision = service.matcher.decide(TrackVectors(kind="person", shape=signature), time.time())
    assert decision.name is None


def test_a_vehicle_is_known_or_unknown(models_dir: Path, service_factory: Any) -> None:
    service = service_factory()
    bus = read_image(models_dir / "sample_photos" / "bus.jpg")
    car = service.embed_crop("vehicle", np.ascontiguousarray(bus[230:750, 0:800]))[0]
    people = service.embed_crop("vehicle", np.ascontiguousarray(bus[400:900, 40:250]))[0]
    service.memory.save_person(
        {"person_id": "the-bus", "name": "the-bus", "role": "family", "kind": "vehicle"}
    )
    service.memory.add_prototype("the-bus", {"vehicle": car}, source="test")
    known = service.matcher.decide(TrackVectors(kind="vehicle", vehicle=car), NOW)
    other = service.matcher.decide(TrackVectors(kind="vehicle", vehicle=people), NOW)
    assert known.name == "the-bus" and known.identity_class == "known_vehicle"
    assert other.name is None and other.identity_class == "unknown_vehicle"
