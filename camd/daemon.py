"""The daemon: two threads per camera around one shared inference pool, events fanned out to
MQTT, the console and the memory, and a clean stop on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import signal
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from camd.config import Config
from camd.history.live import HistoryRecorder
from camd.identity.api import IdentityApi
from camd.identity.service import IdentityService
from camd.malloc import give_back, tune_allocator
from camd.pipeline import CameraPipeline, EventSink
from camd.publish.commands import CameraSwitches
from camd.publish.discovery import Person
from camd.publish.frigate import event_payload
from camd.publish.hass import HassBridge
from camd.publish.mqtt import MqttPublisher
from camd.service import DaemonServices
from camd.sources.status import CameraStatus
from camd.types import TrackEvent
from camd.vision.pool import InferencePool

log = logging.getLogger(__name__)

# Camera threads get this long to notice the stop flag before shutdown moves on without them.
JOIN_TIMEOUT_S = 3.0
TRIM_EVERY_S = 60.0  # hand freed heap memory back to the system (camd/malloc.py)


@dataclass
class RunSummary:
    cameras: int
    frames: int
    tracks: int
    events: int
    sightings: int
    seconds: float
    detect_ms_p50: float | None
    mqtt: dict[str, Any] | None
    body_model: str | None = None  # what recognises people without a face (and whether a fallback)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        detect = f"{self.detect_ms_p50:.1f} ms" if self.detect_ms_p50 is not None else "n/a"
        out = [
            f"cameras {self.cameras}, frames {self.frames}, tracks {self.tracks}, events {self.events}, "
            f"sightings stored {self.sightings}",
            f"{self.seconds:.1f} s wall, {self.fps:.1f} frames/s processed, detector p50 {detect}",
        ]
        if self.mqtt is not None:
            out.append("mqtt: " + ", ".join(f"{k} {v}" for k, v in self.mqtt.items()))
        if self.body_model is not None:
            out.append(f"body model: {self.body_model}")
        return out


class Daemon:
    def __init__(
        self,
        config: Config,
        extra_sinks: list[EventSink] | None = None,
        mqtt: bool | None = None,
    ) -> None:
        self.config = config
        self.stop_event = threading.Event()
        self._extra_sinks = extra_sinks or []
        self._use_mqtt = config.mqtt.enabled if mqtt is None else mqtt
        self.publisher: MqttPublisher | None = None
        self.hass: HassBridge | None = None  # Home Assistant discovery and entity states
        self.identity: IdentityService | None = None
        self.history: HistoryRecorder | None = None  # visits and the digest (camd/history/live.py)
        self.pool: InferencePool | None = None  # the detector(s) every camera shares
        self.pipelines: dict[str, CameraPipeline] = {}
        self.statuses: dict[str, CameraStatus] = {}
        self._sink_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._trimmed_at = time.monotonic()
        self.sightings_stored = 0
        self.services: DaemonServices | None = None  # systemd notify, watchdog, control API
        self.nightly_adapt: Any = None  # camd/adapt/schedule.py, when adapt.nightly_at is set
        self.switches = CameraSwitches(  # per-camera detect ON/OFF, commanded over MQTT
            config.mqtt.topic_prefix, [n for n, c in config.cameras.items() if c.enabled],
            config.switches_path, self._set_detect,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def run(self, install_signals: bool = True) -> RunSummary:
        """Run until every source ends (files) or stop() / SIGTERM / SIGINT."""
        if install_signals:
            self._install_signal_handlers()
        started = time.monotonic()
        try:
            self.start()
            while not self.stop_event.is_set() and any(t.is_alive() for t in self._threads):
                self.stop_event.wait(0.2)
                self._guard("prune", lambda: self.identity.maybe_prune())  # type: ignore[union-attr]
                if self.history is not None:
                    self._guard("visits", self.history.tick)
                if time.monotonic() - self._trimmed_at >= TRIM_EVERY_S:
                    give_back()
                    self._trimmed_at = time.monotonic()
        finally:
            self.shutdown()
        return self.summary(time.monotonic() - started)

    def start(self) -> None:
        tune_allocator()  # before the camera threads allocate their first frames
        self.services = DaemonServices(self)
        self.services.open()
        self.pool = InferencePool.from_config(self.config.detector, self.config.models_path)
        self.identity = IdentityService(self.config)
        if self._use_mqtt:
            self.publisher = MqttPublisher(self.config.mqtt, self.config.outbox_path)
            self.publisher.start()
            if self.config.homeassistant.enabled:
                self.hass = HassBridge(self.config, self.publisher)
                self.hass.start()
                self._announce_people()
        self.services.attach_identity(IdentityApi(self.identity, on_people_changed=self._announce_people))
        self.history = HistoryRecorder(self.config, self.identity.memory.log, self.publisher, self.hass)
        for name, camera in self.config.cameras.items():
            if not camera.enabled:
                log.info("camera %s: disabled in config", name)
                continue
            pipeline = CameraPipeline(
                name, self.config, self.pool, self._fan_out, self.stop_event, on_status=self._on_status,
                identity=self.identity,
            )
            pipeline.detect_enabled = self.switches.detect(name)
            self.pipelines[name] = pipeline
            thread = threading.Thread(target=pipeline.run, name=f"camera-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        if self.publisher is not None:
            self.switches.attach(self.publisher)
        if self.config.adapt.nightly_at is not None:
            from camd.adapt.schedule import NightlyAdapt  # no torch: the child process imports it

            self.nightly_adapt = NightlyAdapt(self.config, self.stop_event)
            self.nightly_adapt.start()
        log.info("camd running: %d camera(s)", len(self._threads))
        self.services.ready()

    def stop(self) -> None:
        self.stop_event.set()

    def shutdown(self) -> None:
        self.stop_event.set()
        if self.services is not None:
            self.services.stopping()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s did not stop in time; leaving it behind", thread.name)
        if self.nightly_adapt is not None:
            self.nightly_adapt.stop()
        if self.pool is not None:
            self.pool.stop()
        if self.hass is not None:
            self.hass.stop()
        if self.services is not None:
            self.services.close()  # before the memory closes under an API call
        if self.publisher is not None:
            self.publisher.stop()
        if self.identity is not None:
            self.sightings_stored = self.identity.memory.count_sightings()
            self.identity.close()
        log.info("camd stopped")

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: object) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    # -- event and status flow -------------------------------------------------------------

    def _fan_out(self, event: TrackEvent) -> None:
        with self._sink_lock:  # one event at a time keeps every sink's order identical
            after = event.after
            log.info(
                "event %s camera=%s label=%s id=%s score=%.2f",
                event.kind, after.camera, after.label, after.event_id, round(after.top_score, 4),
            )
            if self.publisher is not None:
                self.publisher.publish_event(event_payload(event))
            if self.hass is not None:
                hass = self.hass
                self._guard("home assistant", lambda: hass.handle_event(event))
            if self.history is not None:
                history = self.history
                self._guard("visits", lambda: history(event))
            for sink in self._extra_sinks:
                self._guard("sink", lambda sink=sink: sink(event))

    def _set_detect(self, camera: str, on: bool) -> None:
        pipeline = self.pipelines.get(camera)
        if pipeline is not None:
            pipeline.set_detect(on)

    def _announce_people(self) -> None:
        """Home Assistant gets a last-seen sensor and a presence tracker per enrolled person."""
        if self.hass is None or self.identity is None:
            return
        people = [Person(name=p.person_id, role=p.role, kind=p.kind) for p in self.identity.people()]
        self._guard("home assistant people", lambda: self.hass.set_people(people))  # type: ignore[union-attr]

    @staticmethod
    def _guard(what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception:  # a failing side output must not stop the cameras
            log.exception("%s failed for an event", what)

    def _on_status(self, status: CameraStatus) -> None:
        previous = self.statuses.get(status.camera)
        self.statuses[status.camera] = status
        # The source logs its own failures once per outage; here only state changes, at debug.
        if previous is None or previous.state != status.state:
            log.debug("camera %s: status %s", status.camera, status.state)
        if self.publisher is not None:
            self.publisher.publish(
                f"cameras/{status.camera}/status", status.to_dict(), retain=True, durable=False
            )

    # -- reporting -------------------------------------------------------------------------

    def summary(self, seconds: float) -> RunSummary:
        stats = [p.stats for p in self.pipelines.values()]
        timings = [ms for s in stats for ms in s.detect_ms]
        return RunSummary(
            cameras=len(self.pipelines),
            frames=sum(s.frames for s in stats),
            tracks=sum(p.track_events.tracks_announced for p in self.pipelines.values()),
            events=sum(s.events for s in stats),
            sightings=self.sightings_stored,
            seconds=seconds,
            detect_ms_p50=statistics.median(timings) if timings else None,
            mqtt=self.publisher.stats() if self.publisher is not None else None,
            body_model=self.identity.body_model.describe() if self.identity is not None else None,
        )
