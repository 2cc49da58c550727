"""Home Assistant discovery and entity states against a real MQTT broker.

Each test has a broker of its own (``private_broker``): the retained discovery and state messages
they leave behind go with it, instead of piling up on the machine's broker.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from camd.config.schema import Config
from camd.publish.discovery import EVENT_TYPES
from camd.publish.hass import HassBridge
from camd.publish.mqtt import MqttPublisher
from tests.support.broker import BrokerAddress, BrokerProcess, MqttRecorder, Received
from tests.support.hass import hass_config, make_event

# --- what each platform documents -----------------------------------------------------------------
# Configuration variables of each MQTT platform, from Home Assistant's documentation pages
# (home-assistant.io/integrations/<platform>.mqtt, source in home-assistant/home-assistant.io
# source/_integrations/<platform>.mqtt.markdown). Keys common to every MQTT entity:
COMMON = {
    "availability", "availability_mode", "availability_template", "availability_topic", "device",
    "enabled_by_default", "encoding", "entity_category", "entity_picture", "icon", "json_attributes_template",
    "json_attributes_topic", "name", "object_id", "unique_id",
    # MQTT discovery (home-assistant.io/integrations/mqtt#discovery-messages): the origin block, the
    # platform key inside device-based `components`, and default_entity_id, which replaces object_id
    # from 2025.10 (core PR 151775; older releases drop unknown keys from discovery payloads).
    "origin", "platform", "default_entity_id",
}
DOCUMENTED: dict[str, set[str]] = {
    # integrations/event.mqtt (ha_release 2023.8)
    "event": COMMON | {"device_class", "event_types", "payload_available", "payload_not_available", "qos",
                       "state_topic", "value_template"},
    # integrations/image.mqtt (ha_release 2023.7): no qos, no payload_(not_)available on this platform
    "image": COMMON | {"content_type", "image_encoding", "image_topic", "url_template", "url_topic"},
    # integrations/binary_sensor.mqtt
    "binary_sensor": COMMON | {"device_class", "expire_after", "force_update", "off_delay",
                               "payload_available", "payload_not_available", "payload_off", "payload_on",
                               "qos", "state_topic", "value_template"},
    # integrations/sensor.mqtt
    "sensor": COMMON | {"device_class", "expire_after", "force_update", "last_reset_value_template",
                        "options", "payload_available", "payload_not_available", "qos", "state_class",
                        "state_topic", "suggested_display_precision", "unit_of_measurement",
                        "value_template"},
    # integrations/switch.mqtt
    "switch": COMMON | {"command_template", "command_topic", "device_class", "optimistic",
                        "payload_available", "payload_not_available", "payload_off", "payload_on", "qos",
                        "retain", "state_off", "state_on", "state_topic", "value_template"},
    # integrations/device_tracker.mqtt
    "device_tracker": COMMON | {"payload_available", "payload_home", "payload_not_available",
                                "payload_not_home", "payload_reset", "qos", "source_type", "state_topic",
                                "value_template"},
}
REQUIRED = {  # "required: true" (image: one of image_topic / url_topic)
    "event": {"state_topic", "event_types"}, "image": {"image_topic"}, "binary_sensor": {"state_topic"},
    "sensor": {"state_topic"}, "device_tracker": set(), "switch": {"command_topic"},
}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
               "name", "suggested_area", "sw_version", "via_device", "serial_number", "model_id"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
CAMERA_ENTITIES = 8  # sighting event, 3 occupancy, image, status, frames/s, detect switch
PERSON_ENTITIES = 3  # last seen, presence, last visit
HOUSEHOLD_ENTITIES = 2  # visitors today, daily digest (one device for the household's memory)


# --- helpers -------------------------------------------------------------------------------------

@contextlib.contextmanager
def running_bridge(config: Config, people: list[dict[str, Any]] | None = None) -> Iterator[HassBridge]:
    publisher = MqttPublisher(config.mqtt, config.outbox_path)
    publisher.start()
    bridge = HassBridge(config, publisher)
    try:
        bridge.start()
        if people is not None:
            bridge.set_people(people)
        yield bridge
    finally:
        bridge.stop()
        publisher.stop()


def retained(
    broker: BrokerAddress, topic_filter: str, expected: int | set[str], timeout: float = 20.0
) -> dict[str, Any]:
    """What a fresh subscriber gets on topic_filter once the expected retained topics (that many,
    or exactly these) have arrived: {topic: JSON or text}. Retained messages arrive together on
    subscribing, so what is missing once these are in was not retained. Messages still being
    published (or removed) arrive live: subscribe afresh until the retained ones match."""

    def complete(messages: list[Received]) -> bool:
        topics = {m.topic for m in messages if m.retain and m.payload}
        return topics == expected if isinstance(expected, set) else len(topics) >= expected

    deadline = time.monotonic() + timeout
    while True:
        with MqttRecorder(broker, topic_filter).start() as recorder:
            try:
                recorder.wait_for(complete, 2.0, what=f"retained messages {expected} on {topic_filter}")
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                continue
            messages = [m for m in recorder.messages() if m.retain and m.payload]
        return {m.topic: m.json() if m.payload.startswith(b"{") else m.text for m in messages}


def last_on(recorder: MqttRecorder, topic: str, predicate: Any = lambda m: True) -> Received:
    return recorder.wait_for_topic(topic, predicate)


# --- discovery -----------------------------------------------------------------------------------

def test_discovery_is_retained_and_shares_one_device_per_camera(
    tmp_path: Path, private_broker: BrokerProcess
) -> None:
    mqtt_broker = private_broker.address
    config = hass_config(tmp_path, mqtt_broker, cameras=["front_door", "driveway"])
    prefix = config.homeassistant.discovery_prefix
    people = [{"name": "Anna", "role": "family", "kind": "person"},
              {"name": "Red car", "role": "family", "kind": "vehicle"}]
    with running_bridge(config, people):
        everything = 2 * CAMERA_ENTITIES + 2 * PERSON_ENTITIES + HOUSEHOLD_ENTITIES
        configs = retained(mqtt_broker, f"{prefix}/#", everything)

    assert len(configs) == everything
    node = config.homeassistant.node_id
    devices: dict[str, list[dict[str, Any]]] = {}
    for topic, payload in configs.items():
        _, platform, topic_node, object_id, last = topic.split("/")
        assert (topic_node, last) == (node, "config")
        assert "object_id" not in payload  # deprecated since 2025.10
        assert payload["unique_id"] == f"{node}_{object_id}"
        entity = object_id.removeprefix("person_")  # a person's device is named "camd <name>"
        assert payload["default_entity_id"] == f"{platform}.{node}_{entity}"
        assert payload["availability"] == [{"topic": f"{config.mqtt.topic_prefix}/available"}]
        assert payload["origin"]["name"] == "camd"
        devices.setdefault(json.dumps(payload["device"], sort_keys=True), []).append(payload)
    # every component of a camera carries the same device block; one device per camera and person
    assert sorted(len(v) for v in devices.values()) == [
        HOUSEHOLD_ENTITIES, PERSON_ENTITIES, PERSON_ENTITIES, CAMERA_ENTITIES, CAMERA_ENTITIES
    ]
    assert len({p["unique_id"] for p in configs.values()}) == len(configs)
    event = configs[f"{prefix}/event/{node}/front_door_sighting/config"]
    assert event["event_types"] == list(EVENT_TYPES)


def test_each_component_uses_only_keys_its_platform_documents(
    tmp_path: Path, private_broker: BrokerProcess
) -> None:
    mqtt_broker = private_broker.address
    config = hass_config(tmp_path, mqtt_broker)
    prefix = config.homeassistant.discovery_prefix
    with running_bridge(config, [{"name": "Anna", "role": "family", "kind": "person"}]):
        configs = retained(mqtt_broker, f"{prefix}/#", CAMERA_ENTITIES + PERSON_ENTITIES + HOUSEHOLD_ENTITIES)
    platforms = set()
    for topic, payload in configs.items():
        platform = topic.split("/")[1]
        platforms.add(platform)
        undocumented = set(payload) - DOCUMENTED[platform]
        assert not undocumented, f"{topic}: keys {platform}.mqtt does not document: {undocumented}"
        assert REQUIRED[platform] <= set(payload), f"{topic}: missing {REQUIRED[platform] - set(payload)}"
        assert set(payload["device"]) <= DEVICE_KEYS and payload["device"]["identifiers"]
        assert set(payload["origin"]) <= ORIGIN_KEYS
    assert platforms == set(DOCUMENTED)


def test_rediscovery_when_home_assistant_comes_online(tmp_path: Path, private_broker: BrokerProcess) -> None:
    mqtt_broker = private_broker.address
    config = hass_config(tmp_path, mqtt_broker)
    prefix = config.homeassistant.discovery_prefix
    with running_bridge(config), MqttRecorder(mqtt_broker, f"{prefix}/+/+/+/config").start() as recorder:
        recorder.wait_for(lambda ms: len({m.topic for m in ms}) >= CAMERA_ENTITIES, what="first discovery")
        recorder.clear()
        recorder.publish(f"{prefix}/status", "offline")
        recorder.publish(f"{prefix}/status", "online")  # Home Assistant's birth message
        again = recorder.wait_for(lambda ms: len({m.topic for m in ms if not m.retain}) >= CAMERA_ENTITIES,
                                  what="discovery re-sent after online")
    assert all(m.payload for m in again)


def test_camera_removed_between_runs_is_removed_from_home_assistant(
    tmp_path: Path, private_broker: BrokerProcess
) -> None:
    mqtt_broker = private_broker.address
    first = hass_config(tmp_path, mqtt_broker, cameras=["front_door", "garden"])
    prefix, camd_prefix = first.homeassistant.discovery_prefix, first.mqtt.topic_prefix
    with running_bridge(first, [{"name": "Anna", "role": "family", "kind": "person"}]):
        retained(mqtt_broker, f"{prefix}/#", 2 * CAMERA_ENTITIES + PERSON_ENTITIES + HOUSEHOLD_ENTITIES)
    # second run: garden gone from the config, Anna forgotten (set_people without her)
    tag = prefix.removeprefix("ha_")
    second = hass_config(tmp_path, mqtt_broker, cameras=["front_door"], tag=tag)
    with MqttRecorder(mqtt_broker, [f"{prefix}/#", f"{camd_prefix}/#"]).start() as live, \
            running_bridge(second, []):
        removed = live.wait_for(
            lambda ms: len({m.topic for m in ms if not m.payload and m.topic.startswith(prefix)})
            >= CAMERA_ENTITIES + PERSON_ENTITIES, what="empty config messages")
        after = retained(mqtt_broker, f"{prefix}/#", CAMERA_ENTITIES + HOUSEHOLD_ENTITIES)
        state_after = retained(mqtt_broker, f"{camd_prefix}/cameras/#", 3)  # front_door's occupancy
    emptied = {m.topic for m in removed if not m.payload and m.topic.startswith(prefix)}
    assert all("garden" in t or "person_anna" in t for t in emptied)
    assert len(after) == CAMERA_ENTITIES + HOUSEHOLD_ENTITIES
    assert all("front_door" in t for t in after if "household" not in t)
    assert not any("garden" in t for t in state_after)  # garden's retained states cleared too


def test_device_based_discovery_and_switching_from_per_component(
    tmp_path: Path, private_broker: BrokerProcess
) -> None:
    mqtt_broker = private_broker.address
    per_component = hass_config(tmp_path, mqtt_broker)
    prefix = per_component.homeassistant.discovery_prefix
    tag = prefix.removeprefix("ha_")
    with running_bridge(per_component):
        retained(mqtt_broker, f"{prefix}/#", CAMERA_ENTITIES + HOUSEHOLD_ENTITIES)
    by_device = hass_config(tmp_path, mqtt_broker, tag=tag, device_discovery=True)
    node = by_device.homeassistant.node_id
    device_topics = {f"{prefix}/device/{node}_camera_front_door/config",
                     f"{prefix}/device/{node}_person_anna/config", f"{prefix}/device/{node}_household/config"}
    with running_bridge(by_device, [{"name": "Anna", "role": "family", "kind": "person"}]):
        configs = retained(mqtt_broker, f"{prefix}/#", device_topics)  # per-component ones removed
    camera = configs[f"{prefix}/device/{node}_camera_front_door/config"]
    assert set(camera) == {"device", "origin", "availability", "components"}
    assert len(camera["components"]) == CAMERA_ENTITIES
    for object_id, component in camera["components"].items():
        platform = component["platform"]
        assert set(component) <= DOCUMENTED[platform] and REQUIRED[platform] <= set(component)
        assert component["unique_id"] == f"{node}_{object_id}" and "object_id" not in component


# --- entity states -------------------------------------------------------------------------------

def test_events_drive_occupancy_sighting_image_and_presence(
    tmp_path: Path, private_broker: BrokerProcess
) -> None:
    mqtt_broker = private_broker.address
    config = hass_config(tmp_path, mqtt_broker, occupancy_off_delay_s=0.3, presence_away_s=0.6)
    p = config.mqtt.topic_prefix
    camera = f"{p}/cameras/front_door"
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"
    with MqttRecorder(mqtt_broker, [f"{p}/cameras/#", f"{p}/people/#"]).start() as rec, \
            running_bridge(config, [{"name": "Anna", "role": "family", "kind": "person"}]) as bridge:
        last_on(rec, f"{camera}/person/occupancy", lambda m: m.text == "OFF")
        last_on(rec, f"{p}/people/anna/presence", lambda m: m.text == "not_home")

        bridge.handle_event(make_event("new", "front_door", "e1"))  # a person, identity undecided
        last_on(rec, f"{camera}/person/occupancy", lambda m: m.text == "ON")
        stranger = make_event("update", "front_door", "e1", identity_class="stranger", confidence=0.8)
        bridge.handle_event(replace(stranger, crop_jpeg=jpeg))
        fired = last_on(rec, f"{camera}/sighting").json()
        assert (fired["event_type"], fired["event_id"], fired["camera"]) == ("stranger", "e1", "front_door")
        last_on(rec, f"{camera}/stranger/occupancy", lambda m: m.text == "ON")
        assert last_on(rec, f"{camera}/crop").payload == jpeg
        bridge.handle_event(stranger)  # same class again: no second sighting event
        rec.clear()
        bridge.handle_event(make_event("end", "front_door", "e1", identity_class="stranger"))
        last_on(rec, f"{camera}/person/occupancy", lambda m: m.text == "OFF")  # after the off delay
        last_on(rec, f"{camera}/stranger/occupancy", lambda m: m.text == "OFF")
        assert rec.messages(f"{camera}/sighting") == []

        bridge.handle_event(make_event("new", "front_door", "e2", identity="Anna", identity_class="family",
                                       confidence=0.93))
        seen = last_on(rec, f"{p}/people/anna/last_seen").json()
        assert (seen["camera"], seen["role"], seen["identity_class"]) == ("front_door", "family", "family")
        last_on(rec, f"{p}/people/anna/presence", lambda m: m.text == "home")
        family = last_on(rec, f"{camera}/sighting").json()
        assert (family["event_type"], family["identity"]) == ("family", "Anna")
        car = make_event("new", "front_door", "c1", label="car", identity_class="unknown_vehicle")
        bridge.handle_event(car)
        last_on(rec, f"{camera}/vehicle/occupancy", lambda m: m.text == "ON")
        # no further sighting of Anna: away once presence_away_s has passed
        last_on(rec, f"{p}/people/anna/presence", lambda m: m.text == "not_home")
        assert [m.text for m in rec.messages(f"{p}/people/anna/presence")] == ["home", "not_home"]


def test_presence_survives_a_restart(tmp_path: Path, private_broker: BrokerProcess) -> None:
    mqtt_broker = private_broker.address
    config = hass_config(tmp_path, mqtt_broker, presence_away_s=3600)
    p = config.mqtt.topic_prefix
    anna = [{"name": "Anna", "role": "family", "kind": "person"}]
    with running_bridge(config, anna) as bridge:
        bridge.handle_event(make_event("new", "front_door", "e1", identity="Anna", identity_class="family"))
    # the next run, before the identity engine calls set_people: Anna is still announced and home
    with running_bridge(config) as bridge, MqttRecorder(mqtt_broker, f"{p}/people/#").start() as rec:
        assert last_on(rec, f"{p}/people/anna/presence").text == "home"
        assert [person.name for person in bridge.discovery.people()] == ["Anna"]


def test_bad_people_and_crops_are_refused_clearly(tmp_path: Path, private_broker: BrokerProcess) -> None:
    mqtt_broker = private_broker.address
    config = hass_config(tmp_path, mqtt_broker)
    with running_bridge(config) as bridge:
        with pytest.raises(ValueError, match="'name' must be a non-empty string"):
            bridge.set_people([{"role": "family"}])
        with pytest.raises(ValueError, match="kind 'cat'"):
            bridge.set_people([{"name": "Tom", "kind": "cat"}])
        with MqttRecorder(mqtt_broker, f"{config.mqtt.topic_prefix}/cameras/+/crop").start() as rec:
            bridge.handle_event(make_event("new", "front_door", "e1", crop_jpeg=b"\x89PNG not a jpeg"))
            bridge.handle_event(make_event("new", "front_door", "e2", crop_jpeg=b"\xff\xd8\xff\xdbok"))
            assert last_on(rec, f"{config.mqtt.topic_prefix}/cameras/front_door/crop").payload.endswith(b"ok")
        assert len(rec.messages()) == 1
