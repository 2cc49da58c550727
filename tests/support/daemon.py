"""Running the real daemon in tests: a config on a private topic prefix, and a daemon thread."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from camd.config import CameraConfig, Config, MqttConfig
from camd.daemon import Daemon, RunSummary
from tests.support.broker import BrokerAddress


def config_for(tmp_path: Path, models_dir: Path, broker: BrokerAddress, cameras: dict[str, CameraConfig],
               prefix: str) -> Config:
    return Config(
        state_dir=tmp_path / "state",
        models_dir=models_dir,
        mqtt=MqttConfig(host=broker.host, port=broker.port, topic_prefix=prefix, client_id=f"camd-{prefix}"),
        cameras=cameras,
    )


def unique_prefix() -> str:
    return f"camdtest{uuid.uuid4().hex[:8]}"


def run_in_thread(daemon: Daemon) -> tuple[threading.Thread, list[RunSummary]]:
    result: list[RunSummary] = []
    thread = threading.Thread(target=lambda: result.append(daemon.run(install_signals=False)), daemon=True)
    thread.start()
    return thread, result
