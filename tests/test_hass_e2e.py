"""End to end with Home Assistant itself: homeassistant 2024.3.3 discovers camd's entities from the
broker, and camd's events change their states. Home Assistant echoes every state back to MQTT
through ``mqtt_statestream``, which is how the test reads them.

Needs Home Assistant's own venv (~670 MB, ~3 min to create): ``tests/support/hass_setup.sh``.
Skipped with that instruction when absent.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from camd.history.live import HistoryRecorder
from camd.identity.sightings import SightingLog
from camd.publish.commands import CameraSwitches
from camd.publish.hass import HassBridge
from camd.publish.mqtt import MqttPublisher
from camd.sources.status import CameraStatus
from tests.support.broker import BrokerAddress, BrokerProcess, MqttRecorder
from tests.support.hass import HASS_VENV, SETUP_SCRIPT, HomeAssistantProcess, hass_config, make_event

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(480),  # a slow Home Assistant start leaves the later waits their time
    pytest.mark.skipif(not HomeAssistantProcess.available(),
                       reason=f"Home Assistant venv not found at {HASS_VENV}: create it with {SETUP_SCRIPT} "
                              "(~3 min, ~670 MB; or set CAMD_HASS_VENV)"),
]
HA_START_TIMEOUT_S = 150.0  # first start on 2 cores: ~20-40 s; a loaded CI machine is slower

# Entity ids Home Assistant 2024.3 derives from "<device name> <entity name>"; camd's
# default_entity_id announces the same ones for Home Assistant 2025.10+.
CAMERA_ENTITIES = {
    "event.camd_front_door_sighting", "binary_sensor.camd_front_door_person_present",
    "binary_sensor.camd_front_door_vehicle_present", "binary_sensor.camd_front_door_stranger_present",
    "image.camd_front_door_latest_crop", "sensor.camd_front_door_status",
    "sensor.camd_front_door_frames_per_second", "switch.camd_front_door_detect",
}
PERSON_ENTITIES = {"sensor.camd_anna_last_seen", "device_tracker.camd_anna_presence",
                   "sensor.camd_anna_last_visit"}
HOUSEHOLD_ENTITIES = {"sensor.camd_household_visitors_today", "sensor.camd_household_daily_digest"}
EVERY_ENTITY = CAMERA_ENTITIES | PERSON_ENTITIES | HOUSEHOLD_ENTITIES


@pytest.fixture
def home_assistant(private_broker: BrokerProcess) -> Iterator[HomeAssistantProcess]:
    config_dir = Path(tempfile.mkdtemp(prefix="camd-hass-"))
    tag = config_dir.name.rsplit("-", 1)[-1].lower().replace("_", "")
    hass = HomeAssistantProcess(config_dir, private_broker.address, discovery_prefix=f"ha_{tag}",
                                statestream_prefix=f"hass_{tag}")
    try:
        yield hass
    finally:
        hass.cleanup()
        shutil.rmtree(config_dir, ignore_errors=True)


@contextlib.contextmanager
def camd_bridge(tmp_path: Path, broker: BrokerAddress, discovery_prefix: str) -> Iterator[HassBridge]:
    config = hass_config(tmp_path, broker, tag=discovery_prefix.removeprefix("ha_"), occupancy_off_delay_s=0)
    publisher = MqttPublisher(config.mqtt, config.outbox_path)
    publisher.start()
    bridge = HassBridge(config, publisher)
    try:
        bridge.start()
        bridge.set_people([{"name": "Anna", "role": "family", "kind": "person"}])
        # what the daemon publishes for each camera (Daemon._on_status)
        status = CameraStatus("front_door", state="online", frames=50, fps=5.0, width=640, height=360)
        publisher.publish("cameras/front_door/status", status.to_dict(), retain=True, durable=False)
        # the daemon's detect switch, switched off (the state Home Assistant's switch must follow)
        switches = CameraSwitches(config.mqtt.topic_prefix, ["front_door"], tmp_path / "switches.json",
                                  lambda _camera, _on: None)
        switches.attach(publisher)
        switches.set_detect("front_door", False)
        yield bridge
    finally:
        bridge.stop()
        publisher.stop()


def test_home_assistant_creates_camd_entities_and_follows_its_events(
    tmp_path: Path, private_broker: BrokerProcess, home_assistant: HomeAssistantProcess
) -> None:
    mqtt_broker = private_broker.address  # its own broker: Home Assistant's retained states go with it
    stream = home_assistant.statestream_prefix

    def state(entity_id: str) -> str:
        domain, object_id = entity_id.split(".")
        return f"{stream}/{domain}/{object_id}/state"

    prefix = home_assistant.discovery_prefix
    with camd_bridge(tmp_path, mqtt_broker, prefix) as bridge, \
            MqttRecorder(mqtt_broker, f"{stream}/#").start() as states:
        retained_configs = len(EVERY_ENTITY)
        for _attempt in range(10):  # subscribe until all arrive retained: the first announcement is done
            configs = MqttRecorder(mqtt_broker, f"{prefix}/+/+/+/config").start()
            with contextlib.suppress(AssertionError):
                configs.wait_for(lambda ms: len([m for m in ms if m.retain]) >= retained_configs, 2.0)
                if all(m.retain for m in configs.messages()):
                    break
            configs.close()
        else:
            raise AssertionError(f"camd's {retained_configs} discovery configs never all arrived retained")
        home_assistant.start()
        try:
            states.wait_for(
                lambda ms: {state(e) for e in EVERY_ENTITY} <= {m.topic for m in ms},
                HA_START_TIMEOUT_S, what="every camd entity's state echoed by Home Assistant")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{home_assistant.log_tail()}") from None
        # Home Assistant's birth message on <prefix>/status made camd announce everything again
        configs.wait_for(lambda ms: len([m for m in ms if not m.retain]) >= retained_configs,
                         what="discovery re-sent after Home Assistant's birth message")
        configs.close()
        # unavailable at creation, then camd's retained `online` and states arrive
        for entity_id, expected in [
            ("binary_sensor.camd_front_door_person_present", "off"),
            ("device_tracker.camd_anna_presence", "not_home"),
            ("sensor.camd_front_door_status", "online"),  # from the daemon's status topic
            ("sensor.camd_front_door_frames_per_second", "5.0"),
            ("switch.camd_front_door_detect", "off"),  # from camd/front_door/detect/state
        ]:
            states.wait_for_topic(state(entity_id), lambda m, want=expected: m.text == want)

        # a stranger at the front door, with a crop; then Anna comes home
        crop = b"\xff\xd8\xff\xe0" + bytes(512) + b"\xff\xd9"
        bridge.handle_event(make_event("new", "front_door", "e1", identity_class="stranger", confidence=0.9,
                                       crop_jpeg=crop))
        bridge.handle_event(make_event("new", "front_door", "e2", identity="Anna", identity_class="family",
                                       confidence=0.95))
        for entity_id, expected in [
            ("binary_sensor.camd_front_door_person_present", "on"),
            ("binary_sensor.camd_front_door_stranger_present", "on"),
            ("device_tracker.camd_anna_presence", "home"),
        ]:
            states.wait_for_topic(state(entity_id), lambda m, want=expected: m.text == want, timeout=30)
        sighting = f"{stream}/event/camd_front_door_sighting/event_type"
        states.wait_for_topic(sighting, lambda m: m.text == '"stranger"', timeout=30)
        states.wait_for_topic(sighting, lambda m: m.text == '"family"', timeout=30)
        # the image entity's state is the time of its last image: it changed from unknown
        states.wait_for_topic(state("image.camd_front_door_latest_crop"),
                              lambda m: m.text not in ("unknown", "unavailable"), timeout=30)
        last_seen = states.wait_for_topic(state("sensor.camd_anna_last_seen"),
                                          lambda m: m.text not in ("unknown", "unavailable"), timeout=30)
        assert last_seen.text[:4].isdigit()  # a timestamp

        bridge.handle_event(make_event("end", "front_door", "e1", identity_class="stranger"))
        bridge.handle_event(make_event("end", "front_door", "e2", identity="Anna", identity_class="family"))
        states.wait_for_topic(state("binary_sensor.camd_front_door_stranger_present"),
                              lambda m: m.text == "off", timeout=30)

        # The daemon's visit recorder (camd/history/live.py) on those two tracks: Anna's last visit,
        # one visitor today, and the day's digest with its text as an attribute.
        log = SightingLog(tmp_path / "sightings.sqlite3")
        stranger = {"sighting_id": "e1", "person_id": "unknown-1", "camera": "front_door", "label": "person",
                    "identity_class": "stranger", "start_time": time.time() - 5, "end_time": time.time(),
                    "expires_at": time.time() + 86400}  # fmt: skip
        log.add("e1", {}, stranger, "")
        config = hass_config(tmp_path, mqtt_broker, tag=prefix.removeprefix("ha_"))
        # A short visit gap and digest period, so the tick that ends the visit stays in today (a tick an
        # hour ahead made the digest tomorrow's, empty, whenever the test ran after 23:00 UTC).
        config = config.model_copy(
            update={"history": config.history.model_copy(update={"visit_gap_s": 1.0, "digest_every_s": 1.0})}
        )
        recorder = HistoryRecorder(config, log, bridge.publisher, bridge)
        recorder(make_event("end", "front_door", "e1", identity_class="stranger"))
        recorder(make_event("end", "front_door", "e2", identity="Anna", identity_class="family"))
        recorder.tick(time.time() + 2)
        log.close()
        last_visit = states.wait_for_topic(state("sensor.camd_anna_last_visit"),
                                           lambda m: m.text[:4].isdigit(), timeout=30)  # a timestamp
        assert last_visit.text[:10] == time.strftime("%Y-%m-%d", time.gmtime())
        states.wait_for_topic(state("sensor.camd_household_visitors_today"), lambda m: m.text == "1",
                              timeout=30)
        states.wait_for_topic(state("sensor.camd_household_daily_digest"),
                              lambda m: m.text.startswith("2 visits"), timeout=30)
        text = states.wait_for_topic(f"{stream}/sensor/camd_household_daily_digest/text", timeout=30)
        assert "Family: Anna " in text.text and "Strangers (1)" in text.text
    mqtt_trouble = [line for line in home_assistant.log_lines("homeassistant.components.mqtt")
                    if " ERROR " in line or " WARNING " in line]
    assert not mqtt_trouble, "Home Assistant's MQTT integration complained:\n" + "\n".join(mqtt_trouble)
    # camd stopped: its offline message makes every entity unavailable
    with MqttRecorder(mqtt_broker, f"{stream}/#").start() as after:
        after.wait_for_topic(state("binary_sensor.camd_front_door_person_present"),
                             lambda m: m.text == "unavailable", timeout=30)
