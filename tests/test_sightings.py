"""The sighting log (SQLite beside the Qdrant store): what an older store held moves in, vectors keep
their body space, and the embedded store gives back the RAM of what retention deleted."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from camd.identity import enroll
from camd.identity import memory as memory_module
from camd.identity.evidence.body import BodyAppearanceEmbedder
from camd.identity.memory import PROTOTYPES, SIGHTINGS, Memory, point_id
from camd.identity.model_files import face_photo
from camd.identity.sightings import SightingLog
from tests.support.identity_data import after_for, identity_config, read_image, track_from_image

pytest_plugins = ["tests.support.identity"]

NOW = 1_000_000.0


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    vector = rng.normal(size=dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_vectors_keep_their_body_space_and_survive_float16(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    log = SightingLog(tmp_path / "log.sqlite3")
    body, face = _unit(rng, 1280), rng.normal(scale=0.1, size=128).astype(np.float32)
    log.add("ev-1", {"body": body, "face": face}, {"person_id": "anna", "end_time": 5.0}, "mobilenetv2")
    log.add("ev-0", {"face": face}, {"person_id": "anna", "end_time": 1.0}, "mobilenetv2")

    payload, vectors = log.get("ev-1", "mobilenetv2")  # type: ignore[misc]
    assert payload == {"person_id": "anna", "end_time": 5.0, "sighting_id": "ev-1"}
    # 8-bit body vectors (a random one loses a little more than a real embedding, see below)
    assert float(body @ vectors["body"]) > 0.999 and np.abs(vectors["face"] - face).max() < 1e-3
    _, elsewhere = log.get("ev-1", "osnet_x1_0_abc")  # type: ignore[misc]
    assert set(elsewhere) == {"face"}, "a body vector is offered only in its own space"
    everything = log.of_person_with_vectors("anna", "osnet_x1_0_abc", every_space=True)[1][1]
    assert set(everything) == {"face", "body@mobilenetv2"}
    assert [p["sighting_id"] for p in log.of_person("anna")] == ["ev-0", "ev-1"]  # oldest first

    assert log.rename("anna", "ann") == 2 and log.of_person("anna") == []
    assert {p["person_id"] for p in log.of_person("ann")} == {"ann"}
    assert log.update("ev-1", {"expires_at": 10.0}) and not log.update("nope", {"x": 1})
    assert [p["sighting_id"] for p in log.delete_expired(11.0)] == ["ev-1"]
    assert log.get("ev-1", "mobilenetv2") is None and log.count() == 1
    log.close()
    with sqlite3.connect(tmp_path / "log.sqlite3") as db:  # pages that pack float16 body vectors
        assert db.execute("PRAGMA page_size").fetchone()[0] == 16384
    reopened = SightingLog(tmp_path / "log.sqlite3")  # on disk, not in RAM
    assert reopened.count() == 1 and reopened.get("ev-0", "")[0]["person_id"] == "ann"  # type: ignore[index]
    reopened.close()


def test_body_vectors_are_stored_in_8_bits_and_keep_their_similarities(
    tmp_path: Path, models_dir: Path
) -> None:
    """Real appearance embeddings (windows of bus.jpg through the body model) stored as int8 with a
    scale: half the bytes of float16, each cosine to its original > 0.9999, every pair's similarity
    within 0.005 of the original's; the face stays float16."""
    photo = read_image(models_dir / "sample_photos" / "bus.jpg")
    windows = [photo[y:y + 400, x:x + 200] for y in range(0, 600, 150) for x in range(0, 600, 120)]
    onnx = next((models_dir / "body_appearance_onnx").glob("*.onnx"))
    bodies = BodyAppearanceEmbedder(onnx).embed(windows)
    face = np.random.default_rng(3).normal(scale=0.1, size=128).astype(np.float32)
    log = SightingLog(tmp_path / "log.sqlite3")
    for i, body in enumerate(bodies):
        log.add(f"ev-{i}", {"body": body, "face": face}, {"person_id": "anna", "end_time": float(i)}, "space")
    stored = np.stack([log.get(f"ev-{i}", "space")[1]["body"] for i in range(len(bodies))])  # type: ignore[index]
    back_face = log.get("ev-0", "space")[1]["face"]  # type: ignore[index]
    log.close()

    norms = np.linalg.norm(stored, axis=1) * np.linalg.norm(bodies, axis=1)
    cosines = np.sum(stored * bodies, axis=1) / norms
    assert cosines.min() > 0.9999, cosines.min()
    # Unit vectors come back unit: a prototype learned from a sighting is then the same vector whether
    # or not the store normalises it (the export through the daemon and without it must agree).
    assert np.abs(np.linalg.norm(stored, axis=1) - np.linalg.norm(bodies, axis=1)).max() < 1e-6
    assert np.abs(stored @ stored.T - bodies @ bodies.T).max() < 0.005
    assert np.abs(back_face - face).max() < 1e-3, "the face keeps float16"
    with sqlite3.connect(tmp_path / "log.sqlite3") as db:
        rows = dict(db.execute("SELECT name || ':' || encoding, length(data) FROM sighting_vectors "
                               "WHERE sighting_id = 'ev-0'").fetchall())
    assert rows == {"body:q8": 4 + 1280, "face:f2": 2 * 128}


def test_a_log_from_before_8_bit_vectors_reads_and_takes_new_ones(tmp_path: Path) -> None:
    """A log whose vector table has no encoding column (float16 rows) opens, reads them as before and
    stores new sightings in 8 bits beside them."""
    body = _unit(np.random.default_rng(4), 1280)
    path = tmp_path / "log.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE sightings (id TEXT PRIMARY KEY, person_id TEXT, end_time REAL, expires_at REAL,
                                    payload TEXT NOT NULL);
            CREATE TABLE sighting_vectors (sighting_id TEXT NOT NULL REFERENCES sightings (id),
                space TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL,
                PRIMARY KEY (sighting_id, space, name));
        """)
        db.execute("INSERT INTO sightings VALUES ('old', 'anna', 1.0, NULL, '{\"person_id\": \"anna\"}')")
        db.execute("INSERT INTO sighting_vectors VALUES ('old', 'space', 'body', ?)",
                   (body.astype("<f2").tobytes(),))
    log = SightingLog(path)
    old = log.get("old", "space")[1]["body"]  # type: ignore[index]
    log.add("new", {"body": body}, {"person_id": "anna", "end_time": 2.0}, "space")
    new = log.get("new", "space")[1]["body"]  # type: ignore[index]
    log.close()
    assert np.abs(old - body).max() < 1e-3 and float(new @ body) > 0.999
    with sqlite3.connect(path) as db:
        assert dict(db.execute("SELECT sighting_id, encoding FROM sighting_vectors").fetchall()) == {
            "old": "f2", "new": "q8"}


def test_a_store_made_before_the_log_has_its_sightings_moved_in(tmp_path: Path, models_dir: Path) -> None:
    """The layout of the previous release: sightings as points of a Qdrant collection per body space."""
    config = identity_config(tmp_path / "state", models_dir, body_model="mobilenetv2")
    rng = np.random.default_rng(2)
    old = QdrantClient(path=str(config.store_path))
    named = {"face": models.VectorParams(size=128, distance=models.Distance.EUCLID),
             "body": models.VectorParams(size=1280, distance=models.Distance.COSINE)}  # fmt: skip
    old.create_collection(SIGHTINGS, vectors_config=named)
    old.create_collection(f"{SIGHTINGS}_osnet_x1_0_abc", vectors_config={
        **named, "body": models.VectorParams(size=512, distance=models.Distance.COSINE)})  # fmt: skip
    bodies = {}
    for index in range(300):  # more than a scroll page
        sighting_id = f"ev-{index}"
        bodies[sighting_id] = _unit(rng, 1280)
        payload = {"sighting_id": sighting_id, "person_id": "anna" if index % 2 else None,
                   "end_time": NOW + index, "camera": "yard"}  # fmt: skip
        vector = {"body": bodies[sighting_id].tolist(), "face": rng.normal(size=128).tolist()}
        old.upsert(SIGHTINGS, [models.PointStruct(id=point_id(f"sighting:{sighting_id}"), vector=vector,
                                                  payload=payload)])  # fmt: skip
    # the same sighting, copied into an OSNet space without its body vector, plus its 512-d body there
    osnet_body = _unit(rng, 512)
    old.upsert(f"{SIGHTINGS}_osnet_x1_0_abc", [models.PointStruct(
        id=point_id("sighting:ev-1"), vector={"body": osnet_body.tolist()},
        payload={"sighting_id": "ev-1", "person_id": "anna", "end_time": NOW + 1})])  # fmt: skip
    old.close()

    memory = Memory(config)
    try:
        names = {c.name for c in memory.client.get_collections().collections}
        assert not any(name.startswith(SIGHTINGS) for name in names), names
        assert memory.count_sightings() == 300
        moved = memory.sighting("ev-1")
        assert moved.person_id == "anna" and moved.payload["camera"] == "yard"
        assert float(moved.vectors["body"] @ bodies["ev-1"]) > 0.999  # stored in 8 bits
        exported = {hit.key: hit for _, hit in memory.everything_of("anna")[SIGHTINGS]}
        assert len(exported) == len(memory.sightings("anna")) == 150
        assert set(exported["ev-1"].vectors) == {"body", "face", "body@osnet_x1_0_abc"}
    finally:
        memory.close()
    log = SightingLog(config.sightings_path)
    _, vectors = log.get("ev-1", "osnet_x1_0_abc")  # type: ignore[misc]
    assert float(vectors["body"] @ osnet_body) > 0.999, "each space's body vector moved in under its space"
    log.close()


def _live_points(memory: Memory, collection: str) -> int:
    """Points the embedded store holds in RAM, deleted ones included (qdrant-client's local mode)."""
    return len(memory.client._client.collections[memory.collection(collection)].ids_inv)  # type: ignore[attr-defined]


def test_retention_gives_back_the_ram_of_deleted_points(
    models_dir: Path, service_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Strangers come and go all day; the embedded store would hold every one in RAM for ever."""
    monkeypatch.setattr(memory_module, "COMPACT_AFTER", 25)
    service = service_factory(retention_days=1)
    enroll.enroll_photos(service, "obama", "family", face_photo(models_dir, "obama.jpg"))
    kept = _live_points(service.memory, PROTOTYPES)
    look = track_from_image(service, read_image(face_photo(models_dir, "biden.jpg")))
    for index in range(30):
        service.memory.add_prototype(f"unknown-{index}", look.vectors().stored_vectors(), source="stranger",
                                     expires_at=NOW + index)  # fmt: skip
    service.finalise(look, after_for("s", at=NOW), NOW)
    assert _live_points(service.memory, PROTOTYPES) >= kept + 30

    counts = service.prune(NOW + 10)  # 10 expire: fewer than COMPACT_AFTER, the RAM is still held
    assert counts["prototypes"] == 10 and _live_points(service.memory, PROTOTYPES) >= kept + 30
    counts = service.prune(NOW + 3 * 86400)  # the rest, and the stranger: now it reopens
    assert counts["prototypes"] >= 20 and counts["sightings"] == 1
    assert _live_points(service.memory, PROTOTYPES) == kept
    assert {h.key for h in service.memory.prototypes("obama")}, "what lives is still there after the reopen"
    decision = service.finalise(track_from_image(service, read_image(face_photo(models_dir, "obama2.jpg"))),
                                after_for("f", at=NOW + 3 * 86400), NOW + 3 * 86400)  # fmt: skip
    assert decision is not None and decision.name == "obama"


def test_the_log_is_written_once_per_sighting_not_kept_in_qdrant(
    models_dir: Path, service_factory: Any
) -> None:
    service = service_factory()
    photo = read_image(face_photo(models_dir, "obama.jpg"))
    for index in range(5):
        at = NOW + index
        service.finalise(track_from_image(service, photo), after_for(f"ev-{index}", at=at), at)
    names = {c.name for c in service.memory.client.get_collections().collections}
    assert SIGHTINGS not in names and service.memory.count_sightings() == 5
    assert service.config.sightings_path.is_file()


def test_beyond_max_strangers_the_least_recently_seen_are_forgotten(
    models_dir: Path, service_factory: Any
) -> None:
    """A busy street must not grow the memory without bound: at most `max_strangers` are remembered."""
    service = service_factory(max_strangers=10)
    enroll.enroll_photos(service, "obama", "family", face_photo(models_dir, "obama.jpg"))
    service.prune(NOW)  # the hourly prune has just run
    rng = np.random.default_rng(3)
    memory = service.memory
    dim = service.body_model.dim
    for index in range(14):
        pid = f"unknown-{100 + index}"
        memory.save_person({"person_id": pid, "name": pid, "role": "stranger", "kind": "person",
                            "created": NOW, "last_seen": NOW + index, "expires_at": NOW + 1e6})  # fmt: skip
        memory.add_prototype(pid, {"body": _unit(rng, dim)}, source="stranger", expires_at=NOW + 1e6)
        memory.add_sighting(f"old-{index}", {"body": _unit(rng, dim)}, {"person_id": pid, "end_time": NOW})
    assert service.maybe_prune(NOW + 50) is None, "within the hour and no new stranger: no prune"

    # One more stranger, from a real track: a tenth of the cap came since the prune, so it runs now.
    photo = read_image(face_photo(models_dir, "biden.jpg"))
    decision = service.finalise(track_from_image(service, photo), after_for("new", at=NOW + 100), NOW + 100)
    assert decision is not None and decision.identity_class == "stranger"
    counts = service.maybe_prune(NOW + 100)
    assert counts is not None and counts["strangers_forgotten"] == 5

    remembered = {p["person_id"] for p in memory.people(include_strangers=True) if p["role"] == "stranger"}
    assert remembered == {f"unknown-{100 + i}" for i in range(5, 14)} | {decision.global_id}
    assert not memory.prototypes("unknown-100") and memory.prototypes("unknown-105")
    assert memory.sighting("old-0").person_id == "unknown-100", "their sightings stay until retention"
    assert memory.prototypes("obama") and memory.person("obama") is not None, "the family is never capped"
