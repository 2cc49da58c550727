"""The control API of a real running daemon (real decode and detector on the bikes clip).

The identity engine is built separately; its place is taken by tests.support.service.MemoryIdentity,
which implements the same IdentityBackend protocol (and decodes photos for real).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from camd.api import ApiClient, ApiError, ApiServer, ApiStartError, TokenError, ensure_token, read_token
from camd.api.identity import IdentityBackend
from camd.config.schema import ApiConfig
from camd.daemon import Daemon
from camd.identity.memory import Memory, MemoryLockedError
from tests.support.service import MemoryIdentity, daemon_config, running_daemon, wait_for

pytestmark = pytest.mark.slow

# Every call that changes state, with a valid body: refused without the token all the same.
WRITES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/people/Anna/photos", {"photos": [{"filename": "a.jpg", "data": "aGVsbG8="}]}),
    ("PATCH", "/api/people/Anna", {"new_name": "Anne"}),
    ("DELETE", "/api/people/Anna", None),
    ("POST", "/api/people/Anna/forget", None),
    ("POST", "/api/sightings/1700000000.123-abcd/correct", {"name": None}),
    ("POST", "/api/sightings/1700000000.123-abcd/correct", {"not": "Anna"}),
    ("POST", "/api/people/Anna/sighting", {"sighting": "1700000000.123-abcd"}),
    ("POST", "/api/people/Anna/clip", None),
]
SAMPLE_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? -?[0-9.e+-]+$')


class Running:
    def __init__(self, daemon: Daemon, identity: MemoryIdentity) -> None:
        self.daemon = daemon
        self.identity = identity
        self.client = ApiClient.from_config(daemon.config)
        self.http = httpx.Client(base_url=self.client.where, timeout=30)
        self.token = read_token(daemon.config.state_dir)

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Running]:
    config = daemon_config(tmp_path_factory.mktemp("api") / "state", models_dir)
    with running_daemon(config) as daemon:
        identity = MemoryIdentity()
        assert daemon.services is not None
        daemon.services.attach_identity(identity)
        state = Running(daemon, identity)
        wait_for(lambda: state.client.health()["cameras"]["street"].get("frames_processed", 0) >= 3,
                 "three processed frames")
        yield state
        state.http.close()
        state.client.close()


# --- the token ---------------------------------------------------------------------------------------


def test_token_is_created_private_and_kept(tmp_path: Path) -> None:
    token = ensure_token(tmp_path)
    path = tmp_path / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 32 and ensure_token(tmp_path) == token == read_token(tmp_path)
    os.chmod(path, 0o644)
    assert ensure_token(tmp_path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tightened, not trusted as is


def test_missing_token_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="start the daemon once"):
        read_token(tmp_path)


# --- health and metrics --------------------------------------------------------------------------


def test_health_per_camera(running: Running) -> None:
    health = running.client.health()
    assert health["status"] == "ok"
    street = health["cameras"]["street"]
    assert street["state"] == "online"
    assert street["fps"] > 0
    assert street["frames_processed"] >= 3
    assert street["last_frame_age_s"] >= 0
    assert (street["width"], street["height"]) > (0, 0)
    assert health["watchdog"]["stalled"] is False


def test_metrics_are_prometheus_text(running: Running) -> None:
    response = running.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, float] = {}
    declared: set[str] = set()
    for line in response.text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in ("gauge", "counter")
            declared.add(name)
        elif not line.startswith("# HELP "):
            assert SAMPLE_LINE.match(line), f"not a Prometheus sample: {line!r}"
            key, value = line.rsplit(" ", 1)
            assert key.split("{")[0] in declared, f"sample before its TYPE: {line!r}"
            samples[key] = float(value)
    assert samples['camd_camera_up{camera="street"}'] == 1
    assert samples['camd_camera_frames_processed_total{camera="street"}'] >= 3
    assert samples['camd_camera_fps{camera="street"}'] > 0
    assert samples["camd_detector_latency_ms_p50"] > 0
    assert samples["camd_watchdog_stalled"] == 0


def test_openapi_spec_is_served(running: Running) -> None:
    spec = running.http.get("/openapi.json").json()
    expected = {"/health", "/metrics", "/api/people", "/api/people/{name}/photos", "/api/sightings"}
    assert expected <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert spec["paths"]["/api/people/{name}"]["delete"]["security"] == [{"HTTPBearer": []}]


# --- the token guards every change ---------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_writes_without_the_token_are_refused(
    running: Running, method: str, path: str, body: dict[str, Any] | None
) -> None:
    running.identity.people["Anna"] = {"category": "family", "photos": 1}
    before = repr(running.identity.people), len(running.identity.corrections)
    missing = running.http.request(method, path, json=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "api-token" in missing.json()["detail"]
    wrong = running.http.request(method, path, json=body, headers=running.auth("not-the-token"))
    assert wrong.status_code == 403
    assert (repr(running.identity.people), len(running.identity.corrections)) == before  # nothing changed
    running.identity.people.clear()


def test_people_routes_without_identity_service_answer_503(running: Running) -> None:
    assert running.daemon.services is not None
    running.daemon.services.attach_identity(None)
    try:
        answer = running.http.get("/api/people", headers=running.auth())
        assert answer.status_code == 503
        assert "identity service is not running" in answer.json()["detail"]
    finally:
        running.daemon.services.attach_identity(running.identity)


# --- the CLI's calls while the daemon holds the store ------------------------------------------------


def test_client_enrolls_while_the_daemon_holds_the_store(running: Running, models_dir: Path) -> None:
    with pytest.raises(MemoryLockedError, match="control API"):
        Memory(running.daemon.config)  # what the CLI would hit opening the store itself
    photos = [models_dir / "sample_photos" / "zidane.jpg", models_dir / "sample_photos" / "bus.jpg"]
    client = running.client
    enrolled = client.enroll_photos("Zinedine Z", photos, category="visitor")
    assert enrolled["added"] == 2 and enrolled["sizes"] == [[1280, 720], [810, 1080]]  # decoded for real
    assert [p["name"] for p in client.list_people()["people"]] == ["Zinedine Z"]
    assert client.show_person("Zinedine Z")["category"] == "visitor"
    client.rename("Zinedine Z", "Zizou")
    corrected = client.correct("1700000000.123-abcd", "Zizou")
    assert corrected == {"sighting": "1700000000.123-abcd", "name": "Zizou"}
    assert client.sightings(person="Zizou", camera="street", limit=5) == {"sightings": []}
    client.forget("Zizou")
    with pytest.raises(ApiError, match="nobody called 'Zizou'") as missing:
        client.show_person("Zizou")
    assert missing.value.status == 404


def test_bad_photo_is_a_clear_400(running: Running, tmp_path: Path) -> None:
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("shopping list")
    with pytest.raises(ApiError, match="not an image") as refused:
        running.client.enroll_photos("Anna", [not_an_image])
    assert refused.value.status == 400
    bad_base64 = running.http.post("/api/people/Anna/photos", headers=running.auth(),
                                   json={"photos": [{"filename": "x.jpg", "data": "@@@@@@"}]})
    assert bad_base64.status_code == 400 and "base64" in bad_base64.json()["detail"]
    assert "Anna" not in running.identity.people


def test_identity_service_protocol_is_what_the_stand_in_implements() -> None:
    from camd.api.app import CorrectionService, EnrollmentService

    assert isinstance(MemoryIdentity(), IdentityBackend)
    assert isinstance(MemoryIdentity(), EnrollmentService) and isinstance(MemoryIdentity(), CorrectionService)


# --- no server errors, whatever the input ---------------------------------------------------------


@pytest.mark.timeout(420)  # schemathesis starts, then runs its coverage phase against a busy daemon
def test_schemathesis_finds_no_server_error(running: Running, tmp_path: Path) -> None:
    """Property-based requests generated from the served spec (with the token, and schemathesis's own
    variants without it): no 5xx, and status codes, content types and bodies as the spec says.
    Left out: positive_data_acceptance (a schema-valid base64 string that is not an image is
    rightly refused with 400) and allow_header_conformance (Starlette sends no Allow on a 405)."""
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip(f"schemathesis is not installed beside {sys.executable} (pip install schemathesis)")
    url = f"{running.client.where}/openapi.json"
    result = subprocess.run(
        [str(st), "run", url, "--checks", "all",
         "--exclude-checks", "positive_data_acceptance,allow_header_conformance", "--max-examples", "12",
         "--phases", "examples,coverage,fuzzing", "--workers", "1", "--seed", "1",
         "--header", f"Authorization: Bearer {running.token}", "--no-color"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,  # its cache stays out of the repo
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b\d+ passed", result.stdout), result.stdout[-2000:]


# --- where it listens --------------------------------------------------------------------------------


def test_unix_socket(tmp_path: Path, models_dir: Path) -> None:
    config = daemon_config(tmp_path / "state", models_dir, api=ApiConfig(socket=Path("api.sock")))
    path = tmp_path / "state" / "api.sock"
    with running_daemon(config):
        assert stat.S_ISSOCK(path.stat().st_mode)
        with ApiClient.from_config(config) as client:
            assert client.where == f"unix:{path}"
            assert client.health()["cameras"]["street"]["state"] in ("starting", "online")
            with pytest.raises(ApiError) as refused:
                ApiClient(unix_socket=path).remove("Anna")  # no token
            assert refused.value.status == 401
        # what a CLI does without the camera secrets: only the state_dir and the api section
        with ApiClient.for_state_dir(tmp_path / "state", config.api) as light:
            assert light.token == read_token(tmp_path / "state")
            assert "street" in light.health()["cameras"]
    assert not path.exists()


def test_taken_port_is_reported_and_the_cameras_still_run(
    tmp_path: Path, models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        api = ApiConfig(port=port)
        with pytest.raises(ApiStartError, match=f"cannot listen on 127.0.0.1:{port}.*set api.port"):
            ApiServer(None, api, tmp_path).start()  # type: ignore[arg-type]
        caplog.set_level(logging.ERROR, logger="camd.service")
        with running_daemon(daemon_config(tmp_path / "state", models_dir, api=api)) as daemon:
            wait_for(lambda: daemon.pipelines["street"].stats.frames >= 1, "a processed frame")
            assert daemon.services is not None and daemon.services.api is None
    assert any("running without the control API" in r.getMessage() for r in caplog.records)
