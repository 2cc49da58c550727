"""The daemon feeds Home Assistant: enrolled people become entities, sightings bring crops."""

from __future__ import annotations

import uuid
from pathlib import Path

from camd.config import Config
from camd.daemon import Daemon
from camd.identity import enroll
from camd.identity.service import IdentityService
from tests.support.broker import BrokerProcess, MqttRecorder


def test_enrolled_people_get_entities_and_ended_tracks_a_crop(
    tmp_path: Path, models_dir: Path, private_broker: BrokerProcess
) -> None:
    tag = uuid.uuid4().hex[:8]
    broker = private_broker.address
    config = Config.model_validate({
        "state_dir": str(tmp_path / "state"), "models_dir": str(models_dir),
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": f"camd_{tag}"},
        "homeassistant": {"discovery_prefix": f"ha_{tag}"},
        "api": {"enabled": False},
        "cameras": {"street": {"url": str(models_dir / "demo_bikes_clip" / "bikes.mp4")}},
    })  # fmt: skip
    service = IdentityService(config)  # enrolled before the daemon starts, straight into the store
    enroll.enroll_photos(service, "barack", "family", models_dir / "face_photos" / "obama.jpg")
    service.close()

    with MqttRecorder(broker, [f"ha_{tag}/#", f"camd_{tag}/cameras/+/crop"]).start() as recorder:
        summary = Daemon(config).run(install_signals=False)
        assert summary.tracks >= 2
        person = recorder.wait_for_topic(
            f"ha_{tag}/device_tracker/camd/person_barack_presence/config", lambda m: bool(m.payload), 20
        ).json()
        assert person["name"] == "Presence" and person["device"]["name"] == "camd barack"
        crop = recorder.wait_for_topic(f"camd_{tag}/cameras/street/crop", lambda m: len(m.payload) > 0, 20)
        assert crop.payload.startswith(b"\xff\xd8\xff"), "the latest crop is a JPEG"
