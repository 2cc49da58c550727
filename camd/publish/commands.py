"""Commands camd takes over MQTT, as Frigate does: ``<prefix>/<camera>/detect/set`` with ON or OFF
pauses or resumes detection on one camera (open tracks end; the stream stays open, so resuming is
instant). The state is echoed, retained, on ``<prefix>/<camera>/detect/state`` (Home Assistant's
switch follows it) and kept in ``<state_dir>/switches.json``, so a paused camera stays paused
across a restart.

Every payload is untrusted input from anyone who may publish to the broker: it is size-checked
before it is decoded, and anything but ON / OFF (any case, surrounding blanks ignored) is refused
with one warning line, at most WARNINGS_PER_MINUTE of them (a flood is summarised, not logged).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from camd.publish.discovery import StateTopics
from camd.publish.mqtt import MqttPublisher

log = logging.getLogger(__name__)

ON, OFF = "ON", "OFF"
MAX_COMMAND_BYTES = 16  # " off\n" and friends; anything longer is not a switch command
WARNINGS_PER_MINUTE = 10

# apply(camera, detect_on): make a camera's pipeline follow its switch.
Apply = Callable[[str, bool], None]


def parse_switch(payload: bytes) -> bool | None:
    """ON -> True, OFF -> False (any case, blanks around ignored); None for anything else."""
    if len(payload) > MAX_COMMAND_BYTES:
        return None
    try:
        text = payload.decode("utf-8").strip().upper()
    except UnicodeDecodeError:
        return None
    return {ON: True, OFF: False}.get(text)


class _WarningBudget:
    """At most `per_minute` warnings a minute; the rest are counted and reported with the next one."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._window_start = 0.0
        self._in_window = 0
        self.suppressed = 0

    def allow(self, now: float) -> bool:
        if now - self._window_start >= 60.0:
            self._window_start, self._in_window = now, 0
        if self._in_window < self.per_minute:
            self._in_window += 1
            return True
        self.suppressed += 1
        return False


class CameraSwitches:
    """The detect switch of every camera: saved state, MQTT commands, the retained echo.

    Thread-safe: commands arrive on paho's network thread."""

    def __init__(self, prefix: str, cameras: Iterable[str], state_path: Path, apply: Apply) -> None:
        self.topics = StateTopics(prefix)
        self.cameras = list(cameras)
        self._path = Path(state_path)
        self._apply = apply
        self._lock = threading.Lock()
        self._publisher: MqttPublisher | None = None
        self._warnings = _WarningBudget(WARNINGS_PER_MINUTE)
        self.refused = 0  # invalid commands since start
        saved = self._load()
        self._detect = {camera: bool(saved.get(camera, {}).get("detect", True)) for camera in self.cameras}
        for camera, on in self._detect.items():
            if not on:
                log.info("camera %s: detection is OFF (switched off before the last stop; %s ON resumes)",
                         camera, self.topics.detect_set(camera))

    def detect(self, camera: str) -> bool:
        with self._lock:
            return self._detect.get(camera, True)

    def attach(self, publisher: MqttPublisher) -> None:
        """Follow the cameras' command topics and publish each camera's current state."""
        self._publisher = publisher
        for camera in self.cameras:
            self._echo(camera)
            publisher.subscribe(self.topics.detect_set(camera), self._command_handler(camera))

    def set_detect(self, camera: str, on: bool) -> None:
        with self._lock:
            changed = self._detect.get(camera) != on
            self._detect[camera] = on
            if changed:
                self._save()
        self._apply(camera, on)
        if changed:
            log.info("camera %s: detection switched %s", camera, ON if on else OFF)
        self._echo(camera)

    # -- MQTT ------------------------------------------------------------------------------------

    def _command_handler(self, camera: str) -> Callable[[str, bytes], None]:
        def handle(topic: str, payload: bytes) -> None:
            on = parse_switch(payload)
            if on is None:
                self._refuse(topic, payload)
                return
            self.set_detect(camera, on)

        return handle

    def _refuse(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.refused += 1
            if not self._warnings.allow(time.monotonic()):
                return
            suppressed, self._warnings.suppressed = self._warnings.suppressed, 0
        shown = payload[:24]
        log.warning(
            "MQTT command on %s ignored: %r%s (%d bytes) is not ON or OFF%s", topic, shown,
            "..." if len(payload) > len(shown) else "", len(payload),
            f"; {suppressed} more invalid command(s) were ignored without a warning" if suppressed else "",
        )

    def _echo(self, camera: str) -> None:
        if self._publisher is not None:
            state = ON if self.detect(camera) else OFF
            self._publisher.publish_topic(
                self.topics.detect_state(camera), state, retain=True, qos=1, durable=False
            )

    # -- persistence -----------------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, bool]]:
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("switch states in %s unreadable (%s); every camera starts with detection ON",
                        self._path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, dict)}

    def _save(self) -> None:
        """Atomic: a crash leaves the old file or the new one (called with the lock held)."""
        data = {camera: {"detect": on} for camera, on in self._detect.items()}
        tmp = self._path.with_suffix(".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self._path)
        except OSError as exc:
            log.warning("could not save switch states to %s (%s): they apply until the next restart",
                        self._path, exc)
