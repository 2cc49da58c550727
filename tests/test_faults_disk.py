"""A genuinely full disk under a running daemon: a small tmpfs, filled up, then freed.

The crops folder full: the error is logged once (not per crop), events keep their identity, the
daemon goes on, and crops come back when space is freed. The whole state folder full (Qdrant
store, MQTT outbox, crops): each is logged once, clearly, and events still reach the broker.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from camd.config import CameraConfig, Config
from camd.config.schema import ApiConfig, HomeAssistantConfig, IdentityConfig
from camd.daemon import Daemon
from camd.publish.frigate import event_payload
from camd.types import TrackEvent
from tests.support.broker import BrokerAddress, MqttRecorder
from tests.support.daemon import config_for, run_in_thread, unique_prefix
from tests.support.service import wait_for


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """mount(size) -> a fresh tmpfs of that size (e.g. "256k"); unmounted at the end."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"fs-{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs to fill up (needs root and mount rights): "
                        f"{done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(folder: Path) -> Path:
    """Write one file until the filesystem refuses another byte; returns it (delete it to free)."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    with contextlib.suppress(OSError), open(filler, "ab", buffering=0) as out:
        while True:
            out.write(b"\0")  # the last partial block too
    return filler


def traffic(models_dir: Path) -> CameraConfig:
    """The real traffic clip, looped as fast as it decodes: a vehicle sighting every second or two."""
    return CameraConfig(url=str(models_dir / "demo_bikes_clip" / "bikes.mp4"), loop=True, detect_fps=10.0)


class Events:
    """An extra sink of the daemon: every event, in order, as published."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, event: TrackEvent) -> None:
        with self._lock:
            self.items.append(event_payload(event))

    def ends(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e["after"] for e in self.items if e["type"] == "end"]


def messages(caplog: pytest.LogCaptureFixture, text: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage() and r.levelno == level]


def test_full_crops_disk_logs_once_keeps_identities_and_crops_resume_when_freed(
    tmp_path: Path, models_dir: Path, mqtt_broker: BrokerAddress, small_fs: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    crops = small_fs("256k")
    filler = fill(crops)
    config = config_for(tmp_path, models_dir, mqtt_broker, {"street": traffic(models_dir)}, unique_prefix())
    config = config.model_copy(update={
        "identity": IdentityConfig(crops_dir=crops), "api": ApiConfig(enabled=False),
        "homeassistant": HomeAssistantConfig(enabled=False),
    })  # fmt: skip
    caplog.set_level(logging.INFO)
    events = Events()
    daemon = Daemon(config, extra_sinks=[events])
    thread, _ = run_in_thread(daemon)
    try:
        wait_for(lambda: daemon.identity is not None and daemon.identity.crop_outage.failures >= 4,
                 "four crops refused by the full disk", 120)
        assert daemon.identity is not None
        failed = messages(caplog, f"saving crops in {crops} failed", logging.ERROR)
        assert len(failed) == 1, failed  # not one per crop
        assert "No space left on device" in failed[0] and "stored without their crop" in failed[0]
        decided = wait_for(lambda: [e for e in events.ends() if e["identity_class"] is not None][4:] and
                           [e for e in events.ends() if e["identity_class"] is not None],
                           "end events that still carry the identity decision", 30)
        stored = [daemon.identity.memory.sighting(e["id"]).payload for e in decided]
        assert all(s["crop"] is None for s in stored) and all(s["identity_class"] for s in stored)
        assert list(crops.rglob("*.jpg")) == [], "no half-written crop left behind"

        filler.unlink()  # space again
        wait_for(lambda: list(crops.rglob("*.jpg")), "a crop once space is free", 60)
        wait_for(lambda: messages(caplog, "works again", logging.WARNING), "the recovery to be logged", 10)
        frames = daemon.pipelines["street"].stats.frames
        wait_for(lambda: daemon.pipelines["street"].stats.frames > frames + 20, "the camera going on", 30)
        last = daemon.identity.memory.sightings()[-1]
        wait_for(lambda: daemon.identity.memory.sightings()[-1]["sighting_id"] != last["sighting_id"],
                 "a later sighting", 60)
        assert daemon.identity.memory.sightings()[-1]["crop"], "sightings have crops again"
    finally:
        daemon.stop()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert len(messages(caplog, f"saving crops in {crops} failed", logging.ERROR)) == 1
    assert not [r for r in caplog.records if r.exc_info], "no traceback"


def test_full_state_disk_is_logged_clearly_and_events_still_reach_the_broker(
    tmp_path: Path, models_dir: Path, mqtt_broker: BrokerAddress, small_fs: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = small_fs("16m")
    prefix = unique_prefix()
    config = Config.model_validate({
        "state_dir": str(state), "models_dir": str(models_dir),
        "mqtt": {"host": mqtt_broker.host, "port": mqtt_broker.port, "topic_prefix": prefix,
                 "client_id": f"c{uuid.uuid4().hex[:8]}"},
        "api": {"enabled": False}, "homeassistant": {"enabled": False},
        "cameras": {"street": traffic(models_dir)},
    })  # fmt: skip
    caplog.set_level(logging.INFO)
    daemon = Daemon(config)
    thread, _ = run_in_thread(daemon)
    with MqttRecorder(mqtt_broker, f"{prefix}/events").start() as recorder:
        try:
            wait_for(lambda: daemon.identity is not None and daemon.identity.memory.count_sightings() >= 2,
                     "sightings stored while there is room", 120)
            assert daemon.identity is not None and daemon.publisher is not None
            filler = fill(state)
            recorder.clear()
            wait_for(lambda: daemon.identity.store_outage.failures >= 3, "sightings refused when full", 120)
            ends = recorder.wait_for(
                lambda ms: sum(b'"type":"end"' in m.payload for m in ms) >= 3, 60, "end events while full"
            )
            after = [m.json()["after"] for m in ends if m.json()["type"] == "end"]
            assert all(a["identity_class"] is not None for a in after[-3:]), "decided, though not stored"
            store = messages(caplog, "writing sightings to the memory", logging.ERROR)
            outbox = messages(caplog, "MQTT outbox: writing to", logging.ERROR)
            assert len(store) == 1 and "full" in store[0], store
            assert len(outbox) == 1 and "full" in outbox[0] and "sent straight to the broker" in outbox[0]
            assert daemon.publisher.outbox_outage.failures >= 3

            os.unlink(filler)
            count = daemon.identity.memory.count_sightings()
            wait_for(lambda: daemon.identity.store_outage.failures == 0
                     and daemon.identity.memory.count_sightings() > count, "sightings stored again", 120)
            wait_for(lambda: messages(caplog, "works again", logging.WARNING), "the recovery logged", 30)
        finally:
            daemon.stop()
            thread.join(timeout=20)
    assert not thread.is_alive()
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
