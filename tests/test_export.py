"""`camd people export NAME --out FILE`: everything stored about one person, checked against the store
itself, with the daemon stopped (the CLI opens the store) and running (through its API); then
`camd forget` leaves nothing of them."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from camd.cli import main
from camd.config.loader import load_config
from camd.identity import enroll
from camd.identity.memory import PROTOTYPES, SIGHTINGS, Memory
from camd.identity.model_files import face_photo
from tests.support.identity_data import after_for, read_image, track_from_image
from tests.support.service import free_port, running_daemon, wait_for

pytest_plugins = ["tests.support.identity"]

REPO = Path(__file__).resolve().parents[1]
NOW = 1_800_000_000.0


def bundle(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as zipped:
        names = set(zipped.namelist())
        out = {name: json.loads(zipped.read(name)) for name in names if name.endswith(".json")}
        out["crops"] = {name: zipped.read(name) for name in names if name.startswith("crops/")}
        out["enrollment"] = {name: zipped.read(name) for name in names if name.startswith("enrollment/")}
    return out


def same_bundle(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Equal but for the export time, and for the last bits of cosine vectors: Qdrant's local mode
    normalises them again each time the store is opened (float32 rounding)."""
    def split(exported: dict[str, Any]) -> tuple[dict[str, Any], list[np.ndarray]]:
        kept = {k: v for k, v in exported.items() if k not in ("manifest.json", "crops", "enrollment")}
        plain = json.loads(json.dumps(kept))
        vectors = []
        for part in ("prototypes.json", "negative_feedback.json", "sightings.json"):
            for row in plain[part]:
                vectors += [np.asarray(v, np.float32) for _, v in sorted(row.pop("vectors").items())]
        return plain, vectors

    (a, va), (b, vb) = split(one), split(other)
    return (a == b and one["crops"] == other["crops"] and one["enrollment"] == other["enrollment"]
            and len(va) == len(vb)
            and all(np.allclose(x, y, rtol=1e-5, atol=1e-7) for x, y in zip(va, vb, strict=True)))


def check_against_store(exported: dict[str, Any], memory: Memory, name: str) -> None:
    """Every part of the bundle is what the store holds about `name`, and nothing else."""
    assert exported["person.json"] == memory.person(name)
    everything = memory.everything_of(name)
    stored = {h.key: h for _, h in everything[PROTOTYPES]}
    parts = exported["prototypes.json"] + exported["negative_feedback.json"]
    assert {p["key"] for p in parts} == set(stored)
    for proto in parts:
        hit = stored[proto["key"]]
        assert proto["negative"] == bool(hit.payload.get("negative"))
        assert proto["person_id"] == name and proto["source"] and proto["learned_at_iso"]
        assert set(proto["vectors"]) == set(hit.vectors)
        for modality, vector in proto["vectors"].items():
            assert np.array_equal(np.asarray(vector, np.float32), hit.vectors[modality]), modality
        # The crops its body vector was embedded from, kept for another body model, are in the bundle.
        assert len(proto["crop_files"]) == len(hit.payload.get("crops") or [])
        for inside, kept in zip(proto["crop_files"], hit.payload.get("crops") or [], strict=True):
            assert exported["enrollment"][inside] == memory.enrollment_crops.path(kept).read_bytes()
    sightings = {h.key: h for _, h in everything[SIGHTINGS]}
    assert {s["sighting_id"] for s in exported["sightings.json"]} == set(sightings)
    for row in exported["sightings.json"]:
        hit = sightings[row["sighting_id"]]
        for modality, vector in row["vectors"].items():
            assert np.array_equal(np.asarray(vector, np.float32), hit.vectors[modality])
        assert row["crop_file"] is not None, "every sighting here kept its crop"
        assert exported["crops"][row["crop_file"]] == Path(hit.payload["crop"]).read_bytes()
    counts = exported["manifest.json"]["counts"]
    assert counts == {"prototypes": len(exported["prototypes.json"]),
                      "negative_feedback": len(exported["negative_feedback.json"]),
                      "sightings": len(sightings), "crops": len(exported["crops"]),
                      "enrollment_crops": len(exported["enrollment"]), "visits": len(exported["visits.json"])}
    assert counts["enrollment_crops"] >= 1, "the photos' body crops were kept"


def test_export_holds_everything_about_one_person_and_forget_removes_it(
    tmp_path: Path, models_dir: Path, service_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    service = service_factory()
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in ("obama.jpg", "obama2.jpg"):
        (photos / photo).write_bytes(face_photo(models_dir, photo).read_bytes())
    enroll.enroll_photos(service, "obama", "family", photos)
    enroll.enroll_photos(service, "biden", "visitor", face_photo(models_dir, "biden.jpg"))
    for index, photo in enumerate(("obama3.jpg", "obama2.jpg"), start=1):  # two sightings of obama
        look = track_from_image(service, read_image(face_photo(models_dir, photo)))
        decision = service.finalise(look, after_for(f"door-{index}", at=NOW + index), NOW + index)
        assert decision is not None and decision.name == "obama"
    biden = track_from_image(service, read_image(face_photo(models_dir, "biden.jpg")))
    service.finalise(biden, after_for("door-4", at=NOW + 4), NOW + 4)
    # A third sighting given to obama, then "that was not obama": negative feedback about obama (the
    # correction is refused for a sighting that was not matched to him).
    look = track_from_image(service, read_image(face_photo(models_dir, "obama.jpg")))
    decision = service.finalise(look, after_for("door-3", at=NOW + 3), NOW + 3)
    assert decision is not None and decision.name == "obama"
    enroll.correct(service, "door-3", not_name="obama")
    state = service.config.state_dir
    service.close()

    # The daemon stopped: the CLI opens the store itself.
    out = tmp_path / "export" / "obama.zip"
    store = ["--state-dir", str(state), "--models-dir", str(models_dir)]
    assert main(["people", "export", "obama", "--out", str(out), *store]) == 0
    assert "exported obama to" in capsys.readouterr().out
    assert stat.S_IMODE(out.stat().st_mode) == 0o600, "biometric data: owner-only"
    direct = bundle(out)
    assert direct["manifest.json"]["counts"]["sightings"] == 2
    assert direct["manifest.json"]["counts"]["negative_feedback"] >= 1
    assert direct["manifest.json"]["counts"]["prototypes"] >= 4  # 2 photos x (face, body) and same-day
    assert {p["source"] for p in direct["prototypes.json"]} >= {"photo:obama.jpg", "photo:obama2.jpg"}
    assert {p["source"] for p in direct["negative_feedback.json"]} == {"correction:door-3"}
    assert all(p["learned_at_iso"] for p in direct["prototypes.json"])
    assert "biden" not in json.dumps(direct["prototypes.json"] + direct["sightings.json"])
    memory = Memory(service.config)
    try:
        check_against_store(direct, memory, "obama")
    finally:
        memory.close()
    assert main(["people", "export", "nobody", "--out", str(tmp_path / "x.zip"), *store]) == 1
    assert "no one called 'nobody'" in capsys.readouterr().err and not (tmp_path / "x.zip").exists()
    assert main(["people", "export", "obama", *store]) == 2, "--out is required"

    # The daemon running: the same through its API (token required), then forget.
    config_file = tmp_path / "camd.yaml"
    config_file.write_text(
        f"state_dir: {state}\nmodels_dir: {models_dir}\nmqtt: {{enabled: false}}\n"
        f"api: {{port: {free_port()}}}\n"
        f"cameras:\n  street: {{url: {models_dir / 'demo_bikes_clip' / 'bikes.mp4'}, loop: true, "
        "realtime: true}\n"
    )
    config = load_config(config_file)
    with running_daemon(config) as daemon:
        wait_for(lambda: daemon.pipelines["street"].stats.frames >= 3, "frames from the camera")
        url = f"http://127.0.0.1:{config.api.port}/api/people/obama/export"
        assert httpx.get(url).status_code == 401, "biometric data needs the token"
        through = tmp_path / "through.zip"
        done = subprocess.run([sys.executable, "-m", "camd.cli", "people", "export", "obama", "--out",
                               str(through), "--config", str(config_file)], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and "exported obama" in done.stdout, done.stderr
        assert stat.S_IMODE(through.stat().st_mode) == 0o600
        api = bundle(through)
        assert daemon.identity is not None
        check_against_store(api, daemon.identity.memory, "obama")
        assert same_bundle(api, direct), "the same bundle either way"

        forgot = subprocess.run([sys.executable, "-m", "camd.cli", "forget", "obama", "--config",
                                 str(config_file)], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert forgot.returncode == 0, forgot.stderr
        memory = daemon.identity.memory
        assert memory.person("obama") is None and memory.prototypes("obama") == []
        assert memory.everything_of("obama") == {PROTOTYPES: [], SIGHTINGS: []}
        assert all(not Path(row["crop"]).exists() for row in direct["sightings.json"] if row.get("crop"))
        kept = [name for row in direct["prototypes.json"] for name in row.get("crops") or []]
        assert kept and not any(memory.enrollment_crops.path(name).exists() for name in kept)
        assert memory.person("biden") is not None, "only obama was forgotten"
        again = subprocess.run([sys.executable, "-m", "camd.cli", "people", "export", "obama", "--out",
                                str(tmp_path / "gone.zip"), "--config", str(config_file)], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 1 and "no one called 'obama'" in again.stderr
