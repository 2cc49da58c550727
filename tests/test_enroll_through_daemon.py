"""Enrollment and corrections while the daemon holds the store, through its control API, end to end: the
real CLI in a subprocess, the real daemon (camera, identity engine, Qdrant store, API) in this process.

Covered: `enroll --clip` (uploaded; several people: the tracks are listed with crops, then --track),
`enroll --sighting` (a sighting only the daemon's store has), `--vehicle` for photos, clip and sighting,
and `correct SIGHTING --not NAME` (refused unless the sighting was matched to NAME, server-side; accepted:
the negative evidence is stored and vetoes NAME for that look).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from camd.api.auth import read_token
from camd.config.loader import load_config
from camd.daemon import Daemon
from camd.identity.extractors import Extractors
from camd.identity.model_files import face_photo
from camd.identity.service import IdentityService
from camd.identity.track import KeptCrop, TrackEvidence
from tests.support.identity_data import after_for, read_image, track_from_image
from tests.support.service import free_port, running_daemon, wait_for

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.support.identity"]

REPO = Path(__file__).resolve().parents[1]


def camd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "camd.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


class Running:
    def __init__(self, daemon: Daemon, config_file: Path, models: Extractors) -> None:
        self.daemon = daemon
        self.config_file = config_file
        assert daemon.identity is not None
        self.identity: IdentityService = daemon.identity
        # Evidence for the sightings a test makes is embedded with the test's own model instances: the
        # daemon's are busy with its camera (dlib and LiteRT are not thread-safe). Same models, same
        # vectors; the daemon's engine then decides and stores them.
        self.embedder = IdentityService(daemon.config, memory=daemon.identity.memory, extractors=models)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return camd(*args, "--config", str(self.config_file))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.daemon.config.api.port}{path}"

    def http(self) -> httpx.Client:
        token = read_token(self.daemon.config.state_dir)
        return httpx.Client(base_url=self.url(""), timeout=60, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, identity_models: Extractors
) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("through-daemon")
    config_file = root / "camd.yaml"
    config_file.write_text(
        f"state_dir: {root / 'state'}\nmodels_dir: {models_dir}\nmqtt: {{enabled: false}}\n"
        f"api: {{port: {free_port()}}}\n"
        f"cameras:\n  street: {{url: {models_dir / 'demo_bikes_clip' / 'bikes.mp4'}, loop: true, "
        "realtime: true}\n"
    )
    with running_daemon(load_config(config_file)) as daemon:
        wait_for(lambda: daemon.pipelines["street"].stats.frames >= 3, "frames from the camera")
        yield Running(daemon, config_file, identity_models)


def _still_clip(image: np.ndarray, path: Path, frames: int = 20, fps: float = 10.0) -> Path:
    """A short video of a still scene (a small drift per frame, as a hand-held phone gives)."""
    height, width = image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for index in range(frames):
        shift = np.float32([[1, 0, index % 3], [0, 1, 0]])
        writer.write(cv2.warpAffine(image, shift, (width, height), borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    return path


def _listed_tracks(stderr: str) -> list[tuple[int, Path]]:
    rows = []
    for line in stderr.splitlines():
        parts = line.split()
        if parts[:1] == ["--track"]:
            rows.append((int(parts[1]), Path(line.rsplit("crop ", 1)[1])))
    return rows


def test_enroll_from_a_clip_lists_its_people_then_takes_the_chosen_one(
    running: Running, models_dir: Path, tmp_path: Path
) -> None:
    clip = _still_clip(read_image(models_dir / "sample_photos" / "zidane.jpg"), tmp_path / "pair.mp4")

    listing = running.cli("enroll", "zizou", "--role", "visitor", "--clip", str(clip))

    assert listing.returncode == 3, listing.stderr
    assert "shows 2 person tracks; choose one with --track N" in listing.stderr
    tracks = _listed_tracks(listing.stderr)
    assert len(tracks) == 2
    for _, crop in tracks:  # the daemon's crops, sent back and saved on this side
        image = cv2.imread(str(crop))
        assert image is not None and image.shape[0] > 50
    assert running.identity.memory.person("zizou") is None  # nothing enrolled yet
    widest = max(tracks, key=lambda row: cv2.imread(str(row[1])).shape[1])[0]

    chosen = running.cli("enroll", "zizou", "--role", "visitor", "--clip", str(clip), "--track", str(widest))

    assert chosen.returncode == 0, chosen.stderr
    assert "enrolled zizou (visitor person): body 1" in chosen.stdout
    person = running.identity.memory.person("zizou")
    assert person is not None and person["role"] == "visitor"
    assert [h.payload["source"] for h in running.identity.memory.prototypes("zizou")] == [
        f"clip:pair.mp4#{widest}"
    ]
    assert not list((running.daemon.config.state_dir / "uploads").iterdir())  # the upload is gone

    wrong_track = running.cli("enroll", "zizou", "--clip", str(clip), "--track", "999")
    assert wrong_track.returncode == 1
    assert "track 999 is not among the clip's person tracks" in wrong_track.stderr


def test_a_clip_without_anyone_is_a_clear_error(running: Running, tmp_path: Path) -> None:
    empty = _still_clip(np.full((240, 320, 3), 128, np.uint8), tmp_path / "empty.mp4")
    answer = running.cli("enroll", "nobody", "--clip", str(empty))
    assert answer.returncode == 1
    assert "no person was tracked for at least 3 frames" in answer.stderr
    missing = running.cli("enroll", "nobody", "--clip", str(tmp_path / "nope.mp4"))
    assert missing.returncode == 1 and "nope.mp4: no such video file" in missing.stderr


def test_clip_upload_needs_the_token_and_a_body(running: Running) -> None:
    with running.http() as http:
        anonymous = httpx.post(running.url("/api/people/x/clip"), content=b"0" * 100)
        assert anonymous.status_code == 401
        empty = http.post("/api/people/x/clip", content=b"")
        assert empty.status_code == 400 and "no clip" in empty.json()["detail"]
        garbage = http.post("/api/people/x/clip", content=b"not a video at all")
        assert garbage.status_code == 400 and "unreadable" in garbage.json()["detail"]


def test_enroll_from_a_sighting_only_the_daemon_has(running: Running, models_dir: Path) -> None:
    identity = running.identity
    look = track_from_image(running.embedder, read_image(face_photo(models_dir, "obama2.jpg")))
    decision = identity.finalise(look, after_for("1800000001.5-sight"), 1_800_000_001.5)
    assert decision is not None and str(decision.global_id).startswith("unknown-")

    as_vehicle = running.cli("enroll", "barack", "--vehicle", "--sighting", "1800000001.5-sight")
    assert as_vehicle.returncode == 1 and "is a person (person), not a vehicle" in as_vehicle.stderr
    unknown = running.cli("enroll", "barack", "--sighting", "1800000009.9-none")
    assert unknown.returncode == 1 and "no sighting '1800000009.9-none'" in unknown.stderr

    enrolled = running.cli("enroll", "barack", "--role", "family", "--sighting", "1800000001.5-sight")

    assert enrolled.returncode == 0, enrolled.stderr
    assert "enrolled barack (family person): face 1, body 1" in enrolled.stdout
    assert identity.memory.sighting("1800000001.5-sight").payload["identity"] == "barack"
    later = track_from_image(running.embedder, read_image(face_photo(models_dir, "obama3.jpg")))
    assert identity.matcher.decide(later.vectors(), 1_800_000_100.0).name == "barack"
    assert running.cli("forget", "barack").returncode == 0  # the same face is someone else's below


def test_vehicles_enroll_through_the_daemon(running: Running, models_dir: Path, tmp_path: Path) -> None:
    bus_photo = models_dir / "sample_photos" / "bus.jpg"
    photos = tmp_path / "bus"
    photos.mkdir()
    shutil.copy(bus_photo, photos / "bus.jpg")
    by_photo = running.cli("enroll", "the-bus", "--vehicle", "--photos", str(photos))
    assert by_photo.returncode == 0, by_photo.stderr
    assert "enrolled the-bus (family vehicle): vehicle 1" in by_photo.stdout
    assert running.identity.memory.person("the-bus")["kind"] == "vehicle"  # type: ignore[index]

    clip = _still_clip(read_image(bus_photo), tmp_path / "bus.mp4")
    by_clip = running.cli("enroll", "bus-two", "--vehicle", "--clip", str(clip))
    if by_clip.returncode == 3:  # the photo also shows a car or a second box of the bus
        first = _listed_tracks(by_clip.stderr)[0][0]
        by_clip = running.cli("enroll", "bus-two", "--vehicle", "--clip", str(clip), "--track", str(first))
    assert by_clip.returncode == 0, by_clip.stderr
    assert "(family vehicle): vehicle 1" in by_clip.stdout

    # A sighting the daemon made of the bus (its vehicle appearance, as the pipeline embeds it).
    bus = np.ascontiguousarray(read_image(bus_photo)[230:750, 0:800])
    evidence = TrackEvidence(kind="vehicle", best_k=5, camera="street", frames=10)
    for index in range(3):
        appearance, _ = running.embedder.embed_crop("vehicle", bus)
        evidence.crops.append(KeptCrop(1.0, bus, (0, 230, 800, 750), float(index), appearance))
    running.identity.finalise(evidence, after_for("1800000002.5-bus", label="bus"), 1_800_000_002.5)
    by_sighting = running.cli("enroll", "bus-three", "--vehicle", "--sighting", "1800000002.5-bus")
    assert by_sighting.returncode == 0, by_sighting.stderr
    assert "enrolled bus-three (family vehicle): vehicle 1" in by_sighting.stdout


def test_correct_not_name_is_refused_unless_matched_and_then_vetoes_the_look(
    running: Running, models_dir: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "obama"
    photos.mkdir()
    shutil.copy(face_photo(models_dir, "obama.jpg"), photos / "obama.jpg")
    assert running.cli("enroll", "obama", "--photos", str(photos)).returncode == 0
    identity = running.identity
    look = track_from_image(running.embedder, read_image(face_photo(models_dir, "obama2.jpg")))
    matched = identity.finalise(look, after_for("1800000003.5-mine"), 1_800_000_003.5)
    assert matched is not None and matched.name == "obama"
    biden = track_from_image(running.embedder, read_image(face_photo(models_dir, "biden.jpg")))
    stranger = identity.finalise(biden, after_for("1800000004.5-other"), 1_800_000_004.5)
    assert stranger is not None and stranger.name is None
    negatives = [h for h in identity.memory.prototypes("obama") if h.payload["negative"]]
    assert negatives == []

    refused = running.cli("correct", "1800000004.5-other", "--not", "obama")

    assert refused.returncode == 1
    assert f"was not matched to obama (it was matched to {stranger.global_id}); nothing to correct" in (
        refused.stderr
    )
    with running.http() as http:  # the guard is the daemon's: any API client gets it
        direct = http.post("/api/sightings/1800000004.5-other/correct", json={"not": "obama"})
        assert direct.status_code == 400 and "was not matched to obama" in direct.json()["detail"]
        both = http.post("/api/sightings/1800000004.5-other/correct", json={"not": "obama", "name": "obama"})
        assert both.status_code == 400 and "not both" in both.json()["detail"]
        anonymous = httpx.post(running.url("/api/sightings/1800000004.5-other/correct"), json={"not": "x"})
        assert anonymous.status_code == 401
    assert [h for h in identity.memory.prototypes("obama") if h.payload["negative"]] == []

    accepted = running.cli("correct", "1800000003.5-mine", "--not", "obama")

    assert accepted.returncode == 0, accepted.stderr
    assert "is not obama: kept as negative evidence" in accepted.stdout
    assert [h for h in identity.memory.prototypes("obama") if h.payload["negative"]]
    corrected = identity.memory.sighting("1800000003.5-mine").payload
    assert corrected.get("identity") is None and corrected.get("person_id") is None
    again = identity.matcher.decide(look.vectors(), 1_800_000_200.0)
    assert again.name is None  # the same look no longer passes for obama
    other_look = track_from_image(running.embedder, read_image(face_photo(models_dir, "obama.jpg")))
    assert identity.matcher.decide(other_look.vectors(), 1_800_000_200.0).name == "obama"
