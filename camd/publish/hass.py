"""The Home Assistant bridge: turns camd's events into the states of its discovered entities.

Per camera: a `Sighting` event entity fired when a track's identity class is decided (family,
visitor, stranger, known_vehicle, unknown_vehicle); occupancy on/off for person, vehicle and
stranger (turned off ``occupancy_off_delay_s`` after the last one left); the latest crop as an
image. Per enrolled person: when and where last seen, and home/not_home presence that turns to
not_home ``presence_away_s`` after the last sighting.

State messages are retained and not durable: only the latest value matters and the publisher
re-sends it on every reconnect. Sighting events are neither retained (Home Assistant ignores
retained event messages) nor durable: an alert that arrives an outage later would fire automations
at the wrong time; the durable record of every event stays on ``<prefix>/events``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from camd.config.schema import Config
from camd.publish.discovery import EVENT_TYPES, Discovery, Person
from camd.publish.mqtt import MqttPublisher
from camd.types import PERSON, VEHICLE_LABELS, EventKind, TrackEvent, TrackSnapshot

log = logging.getLogger(__name__)

ON, OFF = "ON", "OFF"
HOME, NOT_HOME = "home", "not_home"
# A person seen continuously would otherwise update "last seen" with every event (every ~2 s):
# publish at most this often unless the camera or the presence changes.
LAST_SEEN_MIN_INTERVAL_S = 30.0
JPEG_MAGIC = b"\xff\xd8\xff"
HA_ONLINE = b"online"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class _Occupancy:
    """Tracks of one kind on one camera, and when the sensor is due to turn off."""

    tracks: set[str] = field(default_factory=set)
    state: str = OFF
    off_at: float | None = None


@dataclass(slots=True)
class _Sighting:
    last_seen: float
    camera: str
    presence: str = HOME
    published_at: float = 0.0
    attributes: dict[str, Any] = field(default_factory=dict)


class HassBridge:
    """An event sink for the daemon (``bridge(event)``, a TrackEvent), plus ``set_people`` for the
    identity engine.

    Thread-safe: events arrive from the daemon's fan-out, Home Assistant's `online` from the MQTT
    network thread, timers from the bridge's own thread."""

    def __init__(
        self, config: Config, publisher: MqttPublisher, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = config.homeassistant
        self.publisher = publisher
        self._clock = clock
        self.discovery = Discovery(
            self.settings, config.mqtt.topic_prefix, self._send_discovery,
            Path(config.state_dir) / "homeassistant.json", clear_state=self._clear_state,
        )
        self.topics = self.discovery.topics
        self.cameras = [name for name, cam in config.cameras.items() if cam.enabled]
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._occupancy: dict[tuple[str, str], _Occupancy] = {}
        self._fired: dict[str, str] = {}  # event id -> identity class already fired
        self._people: dict[str, Person] = {}
        self._slugs: dict[str, str] = {}
        self._sightings: dict[str, _Sighting] = {}  # by person name
        self._stopping = False
        self._timer = threading.Thread(target=self._timer_loop, name="camd-hass-timers", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Announce the cameras (and people already known), set initial states, follow HA's status."""
        self.discovery.set_cameras(self.cameras)
        with self._lock:  # until the identity engine calls set_people: those of the last run
            self._people = {p.name: p for p in self.discovery.people()}
        self._restore_sightings()
        self._sync()
        with self._lock:
            for camera in self.cameras:
                for kind in ("person", "vehicle", "stranger"):
                    self._set_occupancy(camera, kind, OFF)  # no track survives a restart
        self.publisher.subscribe(f"{self.settings.discovery_prefix}/status", self._on_ha_status)
        self._timer.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        if self._timer.is_alive():
            self._timer.join(2.0)
        self._save_sightings()

    def set_people(self, people: Iterable[Person | dict[str, Any]]) -> None:
        """The enrolled people and vehicles (Person, or {name, role, kind}), at start and on
        enroll/forget. Those gone are removed from Home Assistant; new ones appear. Raises ValueError
        on a bad entry."""
        parsed = [entry if isinstance(entry, Person) else Person.from_dict(entry) for entry in people]
        with self._lock:
            self._people = {p.name: p for p in parsed}
            self.discovery.set_people(self._people.values())
            self._slugs = self.discovery.person_slugs()
            for name in list(self._sightings):
                if name not in self._people:
                    del self._sightings[name]
        self._sync()

    def _sync(self) -> None:
        self.discovery.sync()
        with self._lock:
            self._slugs = self.discovery.person_slugs()
            for name in self._people:  # a retained state for every person, so none shows "unknown"
                sighting = self._sightings.get(name)
                if sighting is None:
                    self._publish(self.topics.presence(self._slugs[name]), NOT_HOME)
                else:
                    self._publish_sighting(name, sighting)
                    self._publish(self.topics.presence(self._slugs[name]), sighting.presence)
            self._save_sightings()

    def _on_ha_status(self, _topic: str, payload: bytes) -> None:
        if payload.strip() == HA_ONLINE:
            self.discovery.resend()

    # -- events ----------------------------------------------------------------------------------

    def __call__(self, event: TrackEvent) -> None:
        self.handle_event(event)

    def handle_event(self, event: TrackEvent) -> None:
        """One track event (new/update/end). Its crop (an `end`'s, when identity stored one) becomes
        the camera's `Latest crop` image."""
        after = event.after
        camera, event_id = after.camera, after.event_id
        if camera not in self.cameras:
            log.debug("Home Assistant: event from unannounced camera %s ignored", camera)
            return
        ended = event.kind is EventKind.END
        with self._lock:
            self._update_occupancy(camera, event_id, after, ended=ended)
            self._maybe_fire(camera, event_id, after)
            if ended:
                self._fired.pop(event_id, None)
            self._record_sighting(camera, after)
        if event.crop_jpeg is not None:
            self._publish_crop(camera, after, event.crop_jpeg)

    def _update_occupancy(self, camera: str, event_id: str, after: TrackSnapshot, ended: bool) -> None:
        label = after.label
        present = not ended and after.active
        kinds = {"person": label == PERSON, "vehicle": label in VEHICLE_LABELS,
                 "stranger": label == PERSON and after.identity.identity_class == "stranger"}
        for kind, matches in kinds.items():
            occupancy = self._occupancy.setdefault((camera, kind), _Occupancy())
            if matches and present:
                occupancy.tracks.add(event_id)
            else:
                occupancy.tracks.discard(event_id)
            if occupancy.tracks:
                occupancy.off_at = None
                if occupancy.state != ON:
                    self._set_occupancy(camera, kind, ON)
            elif occupancy.state == ON and occupancy.off_at is None:
                occupancy.off_at = self._clock() + self.settings.occupancy_off_delay_s
                self._wake.notify_all()

    def _set_occupancy(self, camera: str, kind: str, state: str) -> None:
        occupancy = self._occupancy.setdefault((camera, kind), _Occupancy())
        occupancy.state = state
        occupancy.off_at = None
        self._publish(self.topics.occupancy(camera, kind), state)

    def _maybe_fire(self, camera: str, event_id: str, after: TrackSnapshot) -> None:
        identity = after.identity
        identity_class = identity.identity_class
        if identity_class not in EVENT_TYPES or self._fired.get(event_id) == identity_class:
            return  # undecided, or this class already fired for this track
        self._fired[event_id] = identity_class
        payload = {
            "event_type": identity_class,
            "identity": identity.name,
            "label": after.label,
            "confidence": identity.confidence,
            "camera": camera,
            "event_id": event_id,
            "global_id": identity.global_id,
            "time": iso(after.frame_time or self._clock()),
        }
        self.publisher.publish_topic(
            self.topics.sighting(camera), payload, retain=False, qos=1, durable=False
        )

    def _record_sighting(self, camera: str, after: TrackSnapshot) -> None:
        name = after.identity.name
        if name is None or name not in self._people:
            return
        now = after.frame_time or self._clock()
        sighting = self._sightings.get(name)
        previous_camera = sighting.camera if sighting else None
        previous_presence = sighting.presence if sighting else NOT_HOME
        if sighting is None:
            sighting = self._sightings[name] = _Sighting(last_seen=now, camera=camera)
        sighting.last_seen = max(sighting.last_seen, now)
        sighting.camera = camera
        sighting.presence = HOME
        sighting.attributes = {
            "event_id": after.event_id, "label": after.label,
            "identity_class": after.identity.identity_class, "confidence": after.identity.confidence,
        }
        self._wake.notify_all()  # the away timer moved
        due = self._clock() - sighting.published_at >= LAST_SEEN_MIN_INTERVAL_S
        if due or previous_camera != camera or previous_presence != HOME:
            self._publish_sighting(name, sighting)
            if previous_presence != HOME:
                self._publish(self.topics.presence(self._slugs[name]), HOME)
            self._save_sightings()

    def _publish_sighting(self, name: str, sighting: _Sighting) -> None:
        person = self._people[name]
        sighting.published_at = self._clock()
        self._publish(self.topics.last_seen(self._slugs[name]), {
            "last_seen": iso(sighting.last_seen), "camera": sighting.camera, "name": name,
            "role": person.role, "kind": person.kind, **sighting.attributes,
        })

    def _publish_crop(self, camera: str, after: TrackSnapshot, crop_jpeg: bytes) -> None:
        if not crop_jpeg.startswith(JPEG_MAGIC):
            log.warning("Home Assistant: crop for event %s on %s is not a JPEG (starts %r); not published",
                        after.event_id, camera, crop_jpeg[:4])
            return
        self._publish(self.topics.crop(camera), crop_jpeg)
        self._publish(self.topics.crop_attributes(camera), {
            "event_id": after.event_id, "label": after.label, "identity": after.identity.name,
            "identity_class": after.identity.identity_class,
            "time": iso(after.frame_time or self._clock()),
        })

    # -- timers ----------------------------------------------------------------------------------

    def _timer_loop(self) -> None:
        with self._lock:
            while not self._stopping:
                now = self._clock()
                self._expire(now)
                deadlines = [o.off_at for o in self._occupancy.values() if o.off_at is not None]
                deadlines += [s.last_seen + self.settings.presence_away_s
                              for s in self._sightings.values() if s.presence == HOME]
                wait = max(0.01, min(deadlines) - now) if deadlines else None
                self._wake.wait(timeout=min(wait, 60.0) if wait is not None else 60.0)

    def _expire(self, now: float) -> None:
        for (camera, kind), occupancy in self._occupancy.items():
            if occupancy.off_at is not None and now >= occupancy.off_at and not occupancy.tracks:
                self._set_occupancy(camera, kind, OFF)
        changed = False
        for name, sighting in self._sightings.items():
            if sighting.presence == HOME and now >= sighting.last_seen + self.settings.presence_away_s:
                sighting.presence = NOT_HOME
                changed = True
                if name in self._slugs:
                    self._publish(self.topics.presence(self._slugs[name]), NOT_HOME)
                log.info("Home Assistant: %s not seen for %.0f s: not_home", name,
                         self.settings.presence_away_s)
        if changed:
            self._save_sightings()

    # -- persistence of sightings (presence survives a restart) ----------------------------------

    def _restore_sightings(self) -> None:
        for name, saved in self.discovery.remembered_people().items():
            try:
                self._sightings[name] = _Sighting(
                    last_seen=float(saved["last_seen"]), camera=str(saved["camera"]),
                    presence=HOME if saved.get("presence") == HOME else NOT_HOME,
                    attributes=dict(saved.get("attributes") or {}),
                )
            except (KeyError, TypeError, ValueError):
                log.warning("Home Assistant: saved sighting of %r unreadable; ignored", name)

    def _save_sightings(self) -> None:
        with self._lock:
            saved = {name: {"last_seen": s.last_seen, "camera": s.camera, "presence": s.presence,
                            "attributes": s.attributes} for name, s in self._sightings.items()}
        self.discovery.remember_people(saved)

    # -- MQTT ------------------------------------------------------------------------------------

    def _publish(self, topic: str, payload: str | bytes | dict[str, Any]) -> None:
        self.publisher.publish_topic(topic, payload, retain=True, qos=1, durable=False)

    def _clear_state(self, topic: str) -> None:
        self._publish(topic, b"")  # an empty retained message deletes the broker's retained one

    def _send_discovery(self, topic: str, payload: bytes) -> None:
        # Durable, in order: a removal is never overtaken by an older config.
        self.publisher.publish_topic(topic, payload, qos=1, retain=True, durable=True)
