"""SIGKILL while camd writes: a real `camd enroll` and a real `camd run` are killed in the middle of
writing to the Qdrant local store (the kill is timed by watching the store's SQLite files grow), and
every restart finds the store intact: it opens (no lock left behind), SQLite's integrity check passes,
people enrolled before are there with every prototype, an interrupted enrollment left nothing (or
everything), new writes work, and the events queued in the MQTT outbox are all delivered."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from camd.config.schema import Config
from camd.identity.body_model import resolve_body_model
from camd.identity.memory import PEOPLE, PROTOTYPES, Memory, body_collections
from camd.publish.outbox import Outbox
from tests.support.broker import BrokerAddress, MqttRecorder, free_port
from tests.support.daemon import unique_prefix
from tests.support.identity_data import identity_config

pytest_plugins = ["tests.support.identity"]

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}


def collection_db(state: Path, collection: str) -> Path:
    return state / "qdrant" / "collection" / collection / "storage.sqlite"


def rows(db: Path, table: str = "points") -> int:
    """Rows committed so far, read by a second process's reader as the writer goes (SQLite allows it).
    `points`: a Qdrant collection's table; `sightings`: the sighting log's."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05) as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:  # locked for the instant of a commit, or not created yet
        return -1


def hot_journals(state: Path) -> list[str]:
    """Collections whose last transaction was cut short (SQLite rolls it back at the next open)."""
    return [j.parent.name for j in (state / "qdrant" / "collection").glob("*/storage.sqlite-journal")
            if j.stat().st_size > 0]


def integrity(state: Path) -> dict[str, str]:
    """SQLite's own check of every collection and of the sighting log (opening read-write rolls a hot
    journal back first)."""
    out = {}
    for db in [*(state / "qdrant" / "collection").glob("*/storage.sqlite"), state / "sightings.sqlite3"]:
        if db.exists():
            with sqlite3.connect(db) as conn:
                out[db.parent.name if db.name == "storage.sqlite" else db.name] = conn.execute(
                    "PRAGMA integrity_check"
                ).fetchone()[0]
    return out


def kill_when(process: subprocess.Popen[str], started: Callable[[], bool], delay_s: float,
              timeout: float) -> bool:
    """SIGKILL `process` `delay_s` after `started()` first holds; False if it ended before that."""
    deadline = time.monotonic() + timeout
    while not started():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the writes never started"
        time.sleep(0.001)
    time.sleep(delay_s)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    return process.returncode == -signal.SIGKILL


def camd(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "camd.cli", *args], cwd=REPO, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def photo_folder(models_dir: Path, folder: Path) -> Path:
    """8 photos (4 real faces, each also mirrored and brightened): 2 prototypes each."""
    folder.mkdir()
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        image = cv2.imread(str(models_dir / "face_photos" / name))
        variants = {"a": image, "b": np.clip(image[:, ::-1].astype(np.int16) + 25, 0, 255).astype(np.uint8)}
        for tag, variant in variants.items():
            cv2.imwrite(str(folder / f"{Path(name).stem}-{tag}.jpg"), np.ascontiguousarray(variant))
    return folder


def store_view(config: Config) -> dict[str, Any]:
    """Open the store as the daemon would after the crash, and read what a test checks."""
    memory = Memory(config)  # raises if the lock or the files were left unusable
    try:
        people = {p["person_id"]: p for p in memory.people()}
        prototypes: dict[str, list[str]] = {}
        for hit in memory.prototypes():
            prototypes.setdefault(hit.person_id, []).append(hit.key)
        return {"people": people, "prototypes": prototypes, "sightings": memory.count_sightings()}
    finally:
        memory.close()


def test_enroll_killed_mid_write_leaves_nothing_half_enrolled(tmp_path: Path, models_dir: Path) -> None:
    state = tmp_path / "state"
    store = ["--state-dir", str(state), "--models-dir", str(models_dir)]
    photos = photo_folder(models_dir, tmp_path / "photos")
    obama = str(models_dir / "face_photos" / "obama.jpg")
    anchor = camd("enroll", "anchor", "--photos", obama, "--json", *store)
    assert anchor.wait(180) == 0, anchor.stdout.read() if anchor.stdout else ""
    reference = camd("enroll", "reference", "--photos", str(photos), "--json", *store)
    out, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, out
    full = sum(json.loads(out[out.index("{"):])["added"].values())
    assert full >= 12, "the photos give ~2 prototypes each"
    config = identity_config(state, models_dir)
    before = store_view(config)
    assert len(before["prototypes"]["anchor"]) == 2 and len(before["prototypes"]["reference"]) == full

    prototypes_db = collection_db(state, body_collections(resolve_body_model(
        config.identity, models_dir, prepare=False).space)[PROTOTYPES])  # this body space's collection
    rng = random.Random(7)
    mid_write = 0
    cut_off: list[str] = []  # victims whose enrollment the kill interrupted (nothing of theirs kept)
    for attempt in range(8):
        name = f"victim-{attempt}"
        baseline = rows(prototypes_db)
        process = camd("enroll", name, "--photos", str(photos), *store)
        killed = kill_when(process, lambda b=baseline: rows(prototypes_db) > b, rng.uniform(0.0, 0.03), 300)
        assert killed, f"attempt {attempt}: the enrollment finished before the kill"
        cut_short = hot_journals(state)
        assert set(integrity(state).values()) == {"ok"}
        written = rows(prototypes_db) - baseline  # raw rows, before the sweep on open
        after = store_view(config)  # opens: no lock left behind, uncommitted prototypes swept
        assert after["prototypes"]["anchor"] == before["prototypes"]["anchor"]
        assert after["prototypes"]["reference"] == before["prototypes"]["reference"]
        kept = len(after["prototypes"].get(name, []))
        if name in after["people"]:
            assert kept == full, f"{name} committed with {kept} of {full} prototypes"
        else:
            assert kept == 0, f"{name} is not enrolled, yet {kept} of its prototypes stayed"
            mid_write += 0 < written <= full
            cut_off.append(name)
        print(f"attempt {attempt}: {written} prototype row(s) written, committed: {name in after['people']},"
              f" transaction cut short in {cut_short or 'none'}")
        if mid_write >= 2:
            break
    assert mid_write >= 2, "the kills never landed in the middle of the writes"

    # A retry of an interrupted enrollment starts clean: exactly one enrollment's prototypes, not
    # those plus leftovers. (A victim the kill reached after its commit is enrolled already; enrolling
    # it again would add a second set, as enrollment is meant to.)
    retried = cut_off[0]
    again = camd("enroll", retried, "--photos", str(photos), "--json", *store)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    final = store_view(config)
    assert len(final["prototypes"][retried]) == full
    assert {"anchor", "reference", retried} <= set(final["people"])


def daemon_yaml(tmp_path: Path, models_dir: Path, mqtt: BrokerAddress, prefix: str) -> Path:
    config = tmp_path / "camd.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nmodels_dir: {models_dir}\n"
        f"mqtt: {{host: {mqtt.host}, port: {mqtt.port}, topic_prefix: {prefix}, client_id: c{prefix}}}\n"
        f"homeassistant: {{enabled: false}}\napi: {{port: {free_port()}}}\n"
        "events: {update_interval_s: 0.5}\n"
        "cameras:\n"
        f"  street: {{url: {models_dir / 'demo_bikes_clip' / 'bikes.mp4'}, loop: true, realtime: false,"
        " detect_fps: 10}\n"
    )
    return config


def test_daemon_killed_while_storing_sightings_restarts_intact_and_delivers_its_outbox(
    tmp_path: Path, models_dir: Path, mqtt_broker: BrokerAddress,
) -> None:
    state = tmp_path / "state"
    config = identity_config(state, models_dir)
    from camd.identity import enroll
    from camd.identity.service import IdentityService

    service = IdentityService(config)  # someone enrolled before the daemon ever ran
    enroll.enroll_photos(service, "anchor", "family", models_dir / "face_photos" / "obama.jpg")
    service.close()
    before = store_view(config)
    prefix = unique_prefix()
    nowhere = BrokerAddress("127.0.0.1", free_port())  # no broker: every event waits in the outbox
    offline = daemon_yaml(tmp_path, models_dir, nowhere, prefix)
    sightings_db = config.sightings_path
    rng = random.Random(11)
    seen = before["sightings"]
    queued: list[str] = []
    for attempt in range(3):
        baseline = rows(sightings_db, "sightings")
        process = camd("run", "--config", str(offline))
        try:
            # Right after a sighting row lands, the rest of that track's writes (person, prototypes,
            # meta) are under way; the last attempt kills later, anywhere in the run.
            delay = rng.uniform(0.0, 0.02) if attempt < 2 else rng.uniform(0.2, 1.5)
            landed = lambda b=baseline: rows(sightings_db, "sightings") > b + 1  # noqa: E731
            killed = kill_when(process, landed, delay, 180)
        finally:
            if process.poll() is None:
                process.kill()
        assert killed, f"attempt {attempt}: camd run ended by itself: {process.stdout.read()[-2000:]}"  # type: ignore[union-attr]
        print(f"kill {attempt}: transaction cut short in {hot_journals(state) or 'none'}")
        assert set(integrity(state).values()) == {"ok"}
        after = store_view(config)
        assert after["prototypes"]["anchor"] == before["prototypes"]["anchor"], "the enrolled person intact"
        assert after["people"]["anchor"]["enrollments"] == before["people"]["anchor"]["enrollments"]
        assert after["sightings"] > seen, "sightings stored before the kill survive it"
        seen = after["sightings"]
        with Outbox(config.outbox_path) as outbox:  # opens: its lock went with the process
            # Track events only: visits (camd/visits) wait in the same outbox.
            queued = [json.loads(item.payload)["message_id"] for item in outbox.peek(1_000_000)
                      if item.topic == f"{prefix}/events"]
        assert queued, "events waited in the outbox"

    online = daemon_yaml(tmp_path, models_dir, mqtt_broker, prefix)
    with MqttRecorder(mqtt_broker, f"{prefix}/events").start() as recorder:
        process = camd("run", "--config", str(online))
        try:
            recorder.wait_for(
                lambda ms: set(queued) <= {json.loads(m.payload)["message_id"] for m in ms}, 90,
                "every event queued before the kills",
            )
            wait_until_more = time.monotonic() + 60
            while rows(sightings_db, "sightings") <= seen + 1 and time.monotonic() < wait_until_more:
                time.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    final = store_view(config)
    assert final["sightings"] > seen, "new sightings are written after the restarts"
    assert final["prototypes"]["anchor"] == before["prototypes"]["anchor"]
    assert rows(collection_db(state, PEOPLE)) >= 1


def test_an_enrollment_cut_short_is_swept_at_the_next_open(
    models_dir: Path, service_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The state a kill leaves, made without a kill (the same writes, no commit): deterministic."""
    from camd.identity import enroll
    from tests.support.identity_data import read_image, track_from_image

    service = service_factory()
    enroll.enroll_photos(service, "anchor", "family", models_dir / "face_photos" / "obama.jpg")
    committed = {h.key for h in service.memory.prototypes("anchor")}
    face = track_from_image(service, read_image(models_dir / "face_photos" / "biden.jpg")).vectors().faces[0]
    service.memory.add_prototype("victim", {"face": face}, source="photo:a.jpg", batch="cut-1")
    service.memory.add_prototype("anchor", {"face": face}, source="photo:b.jpg", batch="cut-2")
    later = service.matcher.decide(track_from_image(service, read_image(
        models_dir / "face_photos" / "biden.jpg")).vectors(), time.time())
    assert later.name != "victim", "a prototype without a person record is never a match"
    service.close()

    caplog.set_level(logging.WARNING)
    reopened = service_factory()
    assert reopened.memory.prototypes("victim") == []
    assert {h.key for h in reopened.memory.prototypes("anchor")} == committed
    swept = [r.getMessage() for r in caplog.records if "did not finish" in r.getMessage()]
    assert len(swept) == 2 and any("'victim'" in m for m in swept), swept
