"""The unit file passes systemd's own checks, and the container files describe the right stack.

systemd-analyze is run for real on a copy of the unit whose ExecStart points at an executable that
exists here (verify refuses a missing one). Docker is not available here: the compose file is
parsed and its services and volumes checked, nothing is built.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "camd.service"
COMPOSE = REPO / "deploy" / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
MAX_EXPOSURE = 2.0


def unit_settings(text: str) -> dict[str, list[str]]:
    """KEY -> every value it is given (systemd allows repeats), across sections."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.fixture
def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd): cannot check the unit")
    return found


@pytest.fixture
def runnable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart at a camd that exists here (the venv's, else a stand-in script)."""
    camd = Path(sys.executable).with_name("camd")
    if not camd.exists():
        camd = tmp_path / "camd"
        camd.write_text("#!/bin/sh\nexit 0\n")
        camd.chmod(0o755)
    text = UNIT.read_text()
    assert "ExecStart=/opt/camd/venv/bin/camd run" in text
    unit = tmp_path / "camd.service"
    unit.write_text(text.replace("ExecStart=/opt/camd/venv/bin/camd", f"ExecStart={camd}"))
    return unit


def test_unit_passes_systemd_analyze_verify(systemd_analyze: str, runnable_unit: Path) -> None:
    result = subprocess.run([systemd_analyze, "verify", str(runnable_unit)], capture_output=True, text=True)
    # verify also reports problems of unrelated units on the host; only camd.service's count here
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "camd.service" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_unit_exposure_is_at_most_2(systemd_analyze: str, runnable_unit: Path) -> None:
    result = subprocess.run(
        [systemd_analyze, "security", "--offline=true", "--no-pager", str(runnable_unit)],
        capture_output=True, text=True,
    )
    found = re.search(r"Overall exposure level for camd\.service:\s*([0-9.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_unit_is_a_notify_service_with_watchdog_and_restart() -> None:
    settings = unit_settings(UNIT.read_text())
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert settings["Restart"] == ["on-failure"]
    assert int(settings["WatchdogSec"][0]) > 0
    assert settings["StateDirectory"] == ["camd"]
    assert settings["EnvironmentFile"][0].lstrip("-") == "/etc/camd/camd.env"
    assert settings["CapabilityBoundingSet"] == [""]
    for key in ("NoNewPrivileges", "PrivateTmp", "DynamicUser"):
        assert settings[key] == ["yes"], key
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert "@system-service" in settings["SystemCallFilter"]


def test_compose_file_runs_camd_with_mosquitto_and_qdrant() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"camd", "mosquitto", "qdrant"}
    camd = services["camd"]
    assert camd["build"]["dockerfile"] == "deploy/Dockerfile"
    assert set(camd["depends_on"]) == {"mosquitto", "qdrant"}
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    named = set(compose["volumes"])
    used = {
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/"))
    }
    assert used == named, f"volumes used {used} vs declared {named}"
    assert any(v.endswith(":/var/lib/camd") for v in camd["volumes"])  # the state survives a rebuild
    assert any(v.endswith(":/qdrant/storage") for v in services["qdrant"]["volumes"])
    assert camd["env_file"], "secrets come from an env file, not the compose file"


def test_compose_config_is_a_valid_camd_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The config the container starts with loads (broker and Qdrant at their service names)."""
    from camd.config.loader import load_config

    compose = yaml.safe_load(COMPOSE.read_text())
    mounted = {"source": "camd_config", "target": "/etc/camd/camd.yaml"}
    assert mounted in compose["services"]["camd"]["configs"]
    content = compose["configs"]["camd_config"]["content"].replace("$$", "$")  # compose's escape for "$"
    (tmp_path / "camd.yaml").write_text(content)
    monkeypatch.setenv("FRONT_DOOR_PASSWORD", "pw")
    config = load_config(tmp_path / "camd.yaml")
    assert config.mqtt.host == "mosquitto"
    assert config.store.url == "http://qdrant:6333"
    assert config.models_path == Path("/opt/camd/models")  # prepared into the image at build time
    assert config.api.host == "0.0.0.0"  # inside the container; compose publishes it on loopback only
    assert "127.0.0.1:8765:8765" in compose["services"]["camd"]["ports"]
    assert config.cameras["front_door"].url.get_secret_value() == "rtsp://admin:pw@192.168.1.10:554/stream2"


def test_dockerfile_is_cpu_only_on_python_311() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.MULTILINE)
    assert "libgl1" in text  # opencv-python needs it
    assert "https://download.pytorch.org/whl/cpu" in text  # model preparation only, never CUDA
    assert "torch==2.13.0" in text
    assert re.search(r"^USER camd", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK ", text, re.MULTILINE)
