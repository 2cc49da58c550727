"""Home Assistant MQTT discovery: what camd announces, and keeping Home Assistant in step with it.

Two layouts, chosen by ``homeassistant.device_discovery``:
- per component (every Home Assistant since 2023.8): one retained message per entity on
  ``<prefix>/<platform>/<node_id>/<object_id>/config``, each carrying the same ``device`` block;
- per device (Home Assistant 2024.11+): one retained message per device on
  ``<prefix>/device/<device_id>/config`` listing its entities under ``components``.

Payloads use full key names (Home Assistant accepts them and its abbreviations alike) and never the
``object_id`` key (deprecated in 2025.10): ``default_entity_id`` pins the entity id on newer Home
Assistant, and older ones drop unknown keys (their discovery schemas use REMOVE_EXTRA) and derive
the same id from the device and entity names.

camd remembers what it announced in a small JSON ledger, so that a camera or person gone from the
config (or forgotten) is removed from Home Assistant with an empty retained message, even when the
change happened between two runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camd import __version__
from camd.config.schema import HomeAssistantConfig

log = logging.getLogger(__name__)

EVENT_TYPES = ("family", "visitor", "stranger", "known_vehicle", "unknown_vehicle")
OCCUPANCY_KINDS = ("person", "vehicle", "stranger")
CAMERA_STATES = ("starting", "online", "reconnecting", "ended", "stopped")
PERSON_KINDS = ("person", "vehicle")
ORIGIN = {"name": "camd", "sw_version": __version__}
LEDGER_VERSION = 1

# send(topic, payload): hand one retained message for a full topic to MQTT.
Send = Callable[[str, bytes], None]


@dataclass(frozen=True, slots=True)
class Person:
    """Someone (or a vehicle) enrolled in camd: the identity engine's set_people() entries."""

    name: str
    role: str | None = None  # family / visitor for people; free text otherwise
    kind: str = "person"  # person | vehicle

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> Person:
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"person entry {entry!r}: 'name' must be a non-empty string")
        kind = entry.get("kind") or "person"
        if kind not in PERSON_KINDS:
            raise ValueError(f"person {name!r}: kind {kind!r} is not one of {PERSON_KINDS}")
        role = entry.get("role")
        return cls(name=name.strip(), role=str(role) if role is not None else None, kind=kind)


def slugify(text: str) -> str:
    """ASCII lowercase with '_' (topic levels and ids); '' when nothing ASCII is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")


def person_slugs(names: Iterable[str]) -> dict[str, str]:
    """A stable, unique slug per name. Names that slug alike (or to nothing) get a short hash of
    the exact name appended, so two people never share topics or unique_ids."""
    ordered = sorted(set(names))
    plain = {name: slugify(name) for name in ordered}
    counts: dict[str, int] = {}
    for slug in plain.values():
        counts[slug] = counts.get(slug, 0) + 1
    slugs = {}
    for name, slug in plain.items():
        if not slug or counts[slug] > 1:
            digest = hashlib.sha1(name.encode()).hexdigest()[:6]
            slug = f"{slug}_{digest}" if slug else f"person_{digest}"
        slugs[name] = slug
    return slugs


@dataclass(frozen=True, slots=True)
class StateTopics:
    """Where camd publishes the entities' states (full topics, under the MQTT prefix)."""

    prefix: str  # mqtt.topic_prefix

    @property
    def available(self) -> str:
        return f"{self.prefix}/available"

    def camera_status(self, camera: str) -> str:
        return f"{self.prefix}/cameras/{camera}/status"  # published by the daemon

    def sighting(self, camera: str) -> str:
        return f"{self.prefix}/cameras/{camera}/sighting"

    def occupancy(self, camera: str, kind: str) -> str:
        return f"{self.prefix}/cameras/{camera}/{kind}/occupancy"

    def detect_set(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/detect/set"  # Frigate's layout: <prefix>/<camera>/detect/set

    def detect_state(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/detect/state"

    def crop(self, camera: str) -> str:
        return f"{self.prefix}/cameras/{camera}/crop"

    def crop_attributes(self, camera: str) -> str:
        return f"{self.prefix}/cameras/{camera}/crop/attributes"

    def last_seen(self, slug: str) -> str:
        return f"{self.prefix}/people/{slug}/last_seen"

    def presence(self, slug: str) -> str:
        return f"{self.prefix}/people/{slug}/presence"

    def last_visit(self, slug: str) -> str:
        return f"{self.prefix}/people/{slug}/last_visit"  # published by camd/history/live.py

    @property
    def visits(self) -> str:
        return f"{self.prefix}/visits"  # each visit's new / end (durable, not retained)

    @property
    def visitors_today(self) -> str:
        return f"{self.prefix}/visitors_today"

    @property
    def digest(self) -> str:
        return f"{self.prefix}/digest"

    def household_retained(self) -> list[str]:
        return [self.visitors_today, self.digest]

    def camera_retained(self, camera: str) -> list[str]:
        """Retained state topics camd owns for a camera (cleared when the camera goes away)."""
        return [*(self.occupancy(camera, k) for k in OCCUPANCY_KINDS), self.crop(camera),
                self.crop_attributes(camera), self.detect_state(camera)]

    def person_retained(self, slug: str) -> list[str]:
        return [self.last_seen(slug), self.presence(slug), self.last_visit(slug)]


@dataclass(slots=True)
class Component:
    """One Home Assistant entity: its platform, the id it is known by, and its own config keys."""

    platform: str  # event, binary_sensor, image, sensor, switch, device_tracker
    object_id: str  # unique within the node; the discovery topic's <object_id> level
    config: dict[str, Any]


@dataclass(slots=True)
class Device:
    """A Home Assistant device (a camera or a person) and its entities."""

    device_id: str  # unique within the broker: <node_id>_camera_<name> / <node_id>_person_<slug>
    info: dict[str, Any]  # the `device` block every component of this device carries
    components: list[Component] = field(default_factory=list)
    state_topics: list[str] = field(default_factory=list)  # retained topics to clear on removal


class Catalog:
    """Builds the devices and discovery payloads for a set of cameras and people."""

    def __init__(self, settings: HomeAssistantConfig, mqtt_prefix: str) -> None:
        self.settings = settings
        self.node = settings.node_id
        self.topics = StateTopics(mqtt_prefix)

    # -- entities ----------------------------------------------------------------------------

    def _entity(self, platform: str, object_id: str, name: str, entity_slug: str | None = None,
                **config: Any) -> Component:
        """entity_slug: the entity id after "<platform>.<node_id>_" (default: object_id)."""
        node = self.node
        base = {
            "name": name,
            "unique_id": f"{node}_{object_id}",
            # Newer HA (2025.10+) takes the entity id from here; older HA derives the same one
            # from "<device name> <entity name>" ("camd front door" + "Person present").
            "default_entity_id": f"{platform}.{node}_{entity_slug or object_id}",
        }
        return Component(platform, object_id, {**base, **config})

    def _device(self, key: str, name: str, model: str, state_topics: list[str]) -> Device:
        """One Home Assistant device of this camd node (a camera or an enrolled person)."""
        device_id = f"{self.node}_{key}"
        info = {"identifiers": [device_id], "name": f"{self.node} {name}", "manufacturer": "camd",
                "model": model, "sw_version": __version__}
        return Device(device_id=device_id, info=info, state_topics=state_topics)

    def camera(self, camera: str) -> Device:
        t = self.topics
        title = camera.replace("_", " ")
        device = self._device(f"camera_{camera}", title, "Camera", t.camera_retained(camera))
        object_prefix = camera
        device.components = [
            self._entity(
                "event", f"{object_prefix}_sighting", "Sighting",
                state_topic=t.sighting(camera), event_types=list(EVENT_TYPES), icon="mdi:account-eye",
            ),
            self._entity(
                "binary_sensor", f"{object_prefix}_person_present", "Person present",
                state_topic=t.occupancy(camera, "person"), device_class="occupancy", icon="mdi:walk",
            ),
            self._entity(
                "binary_sensor", f"{object_prefix}_vehicle_present", "Vehicle present",
                state_topic=t.occupancy(camera, "vehicle"), device_class="occupancy", icon="mdi:car",
            ),
            self._entity(
                "binary_sensor", f"{object_prefix}_stranger_present", "Stranger present",
                state_topic=t.occupancy(camera, "stranger"), device_class="occupancy",
                icon="mdi:account-alert",
            ),
            self._entity(
                "image", f"{object_prefix}_latest_crop", "Latest crop",
                image_topic=t.crop(camera), content_type="image/jpeg",
                json_attributes_topic=t.crop_attributes(camera),
            ),
            self._entity(
                "sensor", f"{object_prefix}_status", "Status",
                state_topic=t.camera_status(camera), value_template="{{ value_json.state }}",
                json_attributes_topic=t.camera_status(camera), entity_category="diagnostic",
                icon="mdi:cctv",
            ),
            self._entity(
                "sensor", f"{object_prefix}_frames_per_second", "Frames per second",
                state_topic=t.camera_status(camera), value_template="{{ value_json.fps }}",
                unit_of_measurement="fps", state_class="measurement", entity_category="diagnostic",
                suggested_display_precision=1, icon="mdi:speedometer",
            ),
            # Frigate's detect switch: OFF pauses detection on this camera (camd.publish.commands).
            self._entity(
                "switch", f"{object_prefix}_detect", "Detect",
                command_topic=t.detect_set(camera), state_topic=t.detect_state(camera),
                payload_on="ON", payload_off="OFF", state_on="ON", state_off="OFF", qos=1,
                entity_category="config", icon="mdi:motion-sensor",
            ),
        ]
        return device

    def person(self, person: Person, slug: str) -> Device:
        t = self.topics
        model = "Enrolled vehicle" if person.kind == "vehicle" else "Enrolled person"
        device = self._device(f"person_{slug}", person.name, model, t.person_retained(slug))
        icon = "mdi:car" if person.kind == "vehicle" else "mdi:account"
        device.components = [
            self._entity(
                "sensor", f"person_{slug}_last_seen", "Last seen", entity_slug=f"{slug}_last_seen",
                state_topic=t.last_seen(slug), value_template="{{ value_json.last_seen }}",
                device_class="timestamp", json_attributes_topic=t.last_seen(slug), icon="mdi:eye",
            ),
            # A device_tracker (not a binary_sensor): Home Assistant's `person` entities take
            # device trackers, so camd's sightings can feed a household member's home/away state.
            # source_type router: a stationary home/not_home scanner, like a Wi-Fi router.
            self._entity(
                "device_tracker", f"person_{slug}_presence", "Presence", entity_slug=f"{slug}_presence",
                state_topic=t.presence(slug), payload_home="home", payload_not_home="not_home",
                source_type="router", json_attributes_topic=t.last_seen(slug), icon=icon,
            ),
            # The latest visit (camd/history/visits.py): arrival time; departure, duration and the
            # cameras passed as attributes.
            self._entity(
                "sensor", f"person_{slug}_last_visit", "Last visit", entity_slug=f"{slug}_last_visit",
                state_topic=t.last_visit(slug), value_template="{{ value_json.arrival }}",
                device_class="timestamp", json_attributes_topic=t.last_visit(slug), icon="mdi:door-open",
            ),
        ]
        return device

    def household(self) -> Device:
        """The household's memory: visitors today and the day's digest (camd/history)."""
        t = self.topics
        device = self._device("household", "household", "Household memory", t.household_retained())
        device.components = [
            self._entity(
                # ids as Home Assistant derives them from "camd household" + the entity's name
                "sensor", "household_visitors_today", "Visitors today", state_topic=t.visitors_today,
                value_template="{{ value_json.count }}", json_attributes_topic=t.visitors_today,
                state_class="measurement", icon="mdi:account-multiple",
            ),
            # A state is at most 255 characters: the summary; the whole text is an attribute.
            self._entity(
                "sensor", "household_daily_digest", "Daily digest", state_topic=t.digest,
                value_template="{{ value_json.summary }}", json_attributes_topic=t.digest,
                icon="mdi:text-box-outline",
            ),
        ]
        return device

    # -- payloads ----------------------------------------------------------------------------

    @property
    def _availability(self) -> list[dict[str, str]]:
        return [{"topic": self.topics.available}]

    def component_topic(self, component: Component) -> str:
        prefix = self.settings.discovery_prefix
        return f"{prefix}/{component.platform}/{self.node}/{component.object_id}/config"

    def device_topic(self, device: Device) -> str:
        return f"{self.settings.discovery_prefix}/device/{device.device_id}/config"

    def component_payload(self, device: Device, component: Component) -> dict[str, Any]:
        return {
            **component.config,
            "availability": self._availability,
            "device": device.info,
            "origin": ORIGIN,
        }

    def device_payload(self, device: Device, tombstones: dict[str, str] | None = None) -> dict[str, Any]:
        """The device-based payload. tombstones {object_id: platform}: components being removed,
        listed with their platform only (Home Assistant's documented way to drop one)."""
        components: dict[str, Any] = {c.object_id: {"platform": c.platform, **c.config}
                                      for c in device.components}
        for object_id, platform in (tombstones or {}).items():
            components[object_id] = {"platform": platform}
        return {
            "device": device.info,
            "origin": ORIGIN,
            "availability": self._availability,
            "components": components,
        }


@dataclass(slots=True)
class Announcement:
    """One discovery config message and what a later run needs to remove it."""

    topic: str
    payload: dict[str, Any]
    components: dict[str, str]  # object_id -> platform (device-based: all; per component: one)


def _dump(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class Discovery:
    """Publishes camd's discovery configs, removes what is no longer there, re-sends on request.

    Thread-safe. ``send`` publishes one retained message to a full topic. The ledger file
    remembers the config topics and retained state topics announced, across runs."""

    def __init__(self, settings: HomeAssistantConfig, mqtt_prefix: str, send: Send, ledger_path: Path,
                 clear_state: Callable[[str], None] | None = None) -> None:
        self.catalog = Catalog(settings, mqtt_prefix)
        self.settings = settings
        self._send = send
        self._clear_state = clear_state or (lambda topic: send(topic, b""))
        self._ledger_path = ledger_path
        self._lock = threading.Lock()
        self._cameras: list[str] = []
        self._ledger = self._load_ledger()
        # The people announced last run stay until set_people() says otherwise: a restart must not
        # remove and re-add them (Home Assistant would drop their customisations and person links).
        self._people: list[Person] = self._remembered_people_list()

    @property
    def topics(self) -> StateTopics:
        return self.catalog.topics

    # -- what exists ---------------------------------------------------------------------------

    def devices(self) -> list[Device]:
        slugs = person_slugs(p.name for p in self._people)
        devices = [self.catalog.camera(name) for name in self._cameras]
        devices += [self.catalog.person(p, slugs[p.name]) for p in self._people]
        if self._cameras:
            devices.append(self.catalog.household())
        return devices

    def person_slugs(self) -> dict[str, str]:
        with self._lock:
            return person_slugs(p.name for p in self._people)

    def announcements(self) -> list[Announcement]:
        out: list[Announcement] = []
        for device in self.devices():
            if self.settings.device_discovery:
                out.append(Announcement(
                    self.catalog.device_topic(device), self.catalog.device_payload(device),
                    {c.object_id: c.platform for c in device.components},
                ))
                continue
            for component in device.components:
                payload = self.catalog.component_payload(device, component)
                out.append(Announcement(self.catalog.component_topic(component), payload,
                                        {component.object_id: component.platform}))
        return out

    # -- publishing ----------------------------------------------------------------------------

    def set_cameras(self, cameras: Iterable[str]) -> None:
        with self._lock:
            self._cameras = sorted(set(cameras))

    def set_people(self, people: Iterable[Person]) -> None:
        with self._lock:
            unique = {p.name: p for p in people}
            self._people = [unique[name] for name in sorted(unique)]

    def people(self) -> list[Person]:
        with self._lock:
            return list(self._people)

    def _remembered_people_list(self) -> list[Person]:
        people = []
        for entry in self._ledger.get("people_list", []):
            try:
                people.append(Person.from_dict(entry))
            except (ValueError, AttributeError):
                log.warning("Home Assistant ledger: person entry %r unreadable; ignored", entry)
        return people

    def sync(self) -> list[str]:
        """Remove what was announced before but is gone, then announce what exists now.
        Returns the retained state topics that were cleared (those of removed devices)."""
        with self._lock:
            current = self.announcements()
            current_topics = {a.topic: a for a in current}
            previous: dict[str, dict[str, str]] = self._ledger["configs"]
            for topic in previous:
                if topic not in current_topics:
                    self._send(topic, b"")
                    log.info("Home Assistant discovery: removed %s", topic)
            for announcement in current:
                gone = {oid: p for oid, p in previous.get(announcement.topic, {}).items()
                        if oid not in announcement.components}
                if gone and self.settings.device_discovery:
                    device_id = announcement.topic.split("/")[-2]
                    device = next(d for d in self.devices() if d.device_id == device_id)
                    self._send(announcement.topic, _dump(self.catalog.device_payload(device, gone)))
                self._send(announcement.topic, _dump(announcement.payload))
            wanted_state = {t for d in self.devices() for t in d.state_topics}
            stale_state = sorted(set(self._ledger["state_topics"]) - wanted_state)
            for topic in stale_state:
                self._clear_state(topic)
            self._ledger["configs"] = {a.topic: a.components for a in current}
            self._ledger["state_topics"] = sorted(wanted_state)
            self._ledger["people_list"] = [{"name": p.name, "role": p.role, "kind": p.kind}
                                           for p in self._people]
            self._save_ledger()
            log.info("Home Assistant discovery: %d config message(s) under %s/ (%s)", len(current),
                     self.settings.discovery_prefix,
                     "device-based" if self.settings.device_discovery else "per component")
            return stale_state

    def resend(self) -> None:
        """Announce everything again (Home Assistant restarted and published `online`)."""
        with self._lock:
            current = self.announcements()
            for announcement in current:
                self._send(announcement.topic, _dump(announcement.payload))
        log.info("Home Assistant came online: re-sent %d discovery config message(s)", len(current))

    # -- the ledger ----------------------------------------------------------------------------

    def _load_ledger(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"version": LEDGER_VERSION, "configs": {}, "state_topics": [], "people": {},
                                 "people_list": []}
        try:
            data = json.loads(self._ledger_path.read_text())
        except FileNotFoundError:
            return empty
        except (OSError, ValueError) as error:
            log.warning("Home Assistant ledger %s unreadable (%s): starting afresh; entities of cameras "
                        "removed meanwhile must be deleted by hand in Home Assistant",
                        self._ledger_path, error)
            return empty
        if not isinstance(data, dict) or data.get("version") != LEDGER_VERSION:
            log.warning("Home Assistant ledger %s has an unknown format; starting afresh", self._ledger_path)
            return empty
        return {**empty, **data}

    def _save_ledger(self) -> None:
        self._ledger_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._ledger_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._ledger, indent=1, sort_keys=True))
        os.replace(tmp, self._ledger_path)  # atomic: a crash leaves the old ledger or the new one

    def remembered_people(self) -> dict[str, Any]:
        """Per-person presence state saved by the bridge (survives restarts)."""
        with self._lock:
            return dict(self._ledger.get("people", {}))

    def remember_people(self, people: dict[str, Any]) -> None:
        with self._lock:
            self._ledger["people"] = people
            self._save_ledger()
