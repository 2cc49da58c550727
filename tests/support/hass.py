"""Home Assistant for tests: camd configs and events to feed the bridge, and a real Home Assistant.

- ``hass_config(tmp_path, broker, cameras=..., **homeassistant)``: a camd Config with unique MQTT
  and discovery prefixes (tests share the broker on 1883) and its state in tmp_path.
- ``make_event(kind, camera, event_id, ...)``: a Frigate-shaped event built by camd's own TrackState.
- ``HomeAssistantProcess``: homeassistant 2024.3.3 from its own venv (tests/support/hass_setup.sh)
  with the MQTT broker as a hand-written config entry and ``mqtt_statestream`` echoing every
  entity's state back to MQTT, where a test reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from camd.config.schema import Config
from camd.events import TrackState
from camd.types import EventKind, Identity, TrackEvent
from tests.support.broker import BrokerAddress, free_port

HASS_VENV = Path(os.environ.get("CAMD_HASS_VENV", Path.home() / ".cache" / "camd-hass" / "venv"))
SETUP_SCRIPT = Path(__file__).with_name("hass_setup.sh")


def hass_config(state_dir: Path, broker: BrokerAddress, cameras: list[str] | None = None,
                tag: str | None = None, **homeassistant: Any) -> Config:
    """A config whose topics are private to this test: camd prefix and discovery prefix carry tag."""
    tag = tag or uuid.uuid4().hex[:8]
    settings = {"discovery_prefix": f"ha_{tag}", **homeassistant}
    return Config.model_validate({
        "state_dir": str(state_dir),
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": f"camd_{tag}",
                 "client_id": f"camd-test-{tag}-{uuid.uuid4().hex[:4]}"},
        "homeassistant": settings,
        "cameras": {name: {"url": f"/nonexistent/{name}.mp4"} for name in (cameras or ["front_door"])},
    })


def make_event(kind: str, camera: str, event_id: str, label: str = "person", *,
               identity: str | None = None, identity_class: str | None = None,
               confidence: float | None = None, frame_time: float | None = None,
               crop_jpeg: bytes | None = None) -> TrackEvent:
    """An event as camd's event builder shapes it (the identity fields as identity will fill them)."""
    now = frame_time if frame_time is not None else time.time()
    state = TrackState(event_id=event_id, camera=camera, track_id=1, start_time=now - 1.0)
    state.labels[label] += 3
    state.score = state.top_score = 0.9
    state.box = (10.0, 20.0, 110.0, 220.0)
    state.frame_size = (640, 360)
    state.last_seen = now
    state.frames = 3
    state.identity = Identity(name=identity, identity_class=identity_class, confidence=confidence,
                              global_id=f"g-{event_id}" if identity else None)
    if kind == "end":
        state.end_time = now
    after = state.snapshot()
    return TrackEvent(EventKind(kind), f"{event_id}:1", after, after, crop_jpeg)


class HomeAssistantProcess:
    """``hass -c CONFIG --skip-pip`` against a broker; its states come back on ``<statestream>/...``."""

    def __init__(self, config_dir: Path, broker: BrokerAddress, discovery_prefix: str,
                 statestream_prefix: str) -> None:
        self.config_dir = config_dir
        self.broker = broker
        self.discovery_prefix = discovery_prefix
        self.statestream_prefix = statestream_prefix
        self.port = free_port()
        self.log_path = config_dir / "hass-stdout.log"
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return (HASS_VENV / "bin" / "hass").is_file() and (HASS_VENV / ".camd-ready").is_file()

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(
            "homeassistant:\n  name: camd test\n  time_zone: UTC\n  latitude: 0\n  longitude: 0\n"
            "  elevation: 0\n  unit_system: metric\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.port}\n"
            "logger:\n  default: warning\n  logs:\n    homeassistant.components.mqtt: info\n"
            f"mqtt_statestream:\n  base_topic: {self.statestream_prefix}\n  publish_attributes: true\n"
        )
        storage = self.config_dir / ".storage"
        storage.mkdir(exist_ok=True)
        # The MQTT integration is set up through the UI normally: write its config entry by hand.
        entry = {
            "entry_id": uuid.uuid4().hex, "version": 1, "minor_version": 1, "domain": "mqtt",
            "title": "camd test broker", "source": "user", "unique_id": None, "options": {},
            "pref_disable_new_entities": False, "pref_disable_polling": False, "disabled_by": None,
            "data": {"broker": self.broker.host, "port": self.broker.port, "discovery": True,
                     "discovery_prefix": self.discovery_prefix,
                     # birth/will beside the discovery prefix, as with the default prefix
                     "birth_message": {"topic": f"{self.discovery_prefix}/status", "payload": "online",
                                       "qos": 0, "retain": False},
                     "will_message": {"topic": f"{self.discovery_prefix}/status", "payload": "offline",
                                      "qos": 0, "retain": False},
                     "client_id": f"hass-test-{uuid.uuid4().hex[:6]}"},
        }
        (storage / "core.config_entries").write_text(json.dumps(
            {"version": 1, "minor_version": 1, "key": "core.config_entries", "data": {"entries": [entry]}}
        ))

    def start(self) -> None:
        self.write_config()
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [str(HASS_VENV / "bin" / "hass"), "-c", str(self.config_dir), "--skip-pip"],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the hass process and its children
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def log_lines(self, marker: str) -> list[str]:
        """Lines of Home Assistant's log that contain marker (e.g. "ERROR")."""
        path = self.config_dir / "home-assistant.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return [line for line in text.splitlines() if marker in line]

    def log_tail(self, lines: int = 40) -> str:
        text = ""
        for path in (self.log_path, self.config_dir / "home-assistant.log"):
            if path.is_file():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                text += f"--- {path.name}\n" + "\n".join(tail) + "\n"
        return text

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.config_dir, ignore_errors=True)
