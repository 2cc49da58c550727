"""Faults at one camera never stop the others: the daemon with a good camera beside a bad one."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camd.config import CameraConfig, Config
from camd.daemon import Daemon
from tests.support.broker import BrokerAddress
from tests.support.daemon import config_for, run_in_thread, unique_prefix
from tests.support.media import corrupted_copy, make_resolution_change_clip, transcode, truncated_copy


def good_camera(models_dir: Path) -> CameraConfig:
    """Real traffic, looped at its own pace: a camera that keeps producing for the whole test."""
    return CameraConfig(url=str(models_dir / "demo_bikes_clip" / "bikes.mp4"), loop=True, realtime=True)


def frames_of(daemon: Daemon, camera: str) -> int:
    pipeline = daemon.pipelines.get(camera)  # absent until the daemon's start() created it
    return pipeline.stats.frames if pipeline is not None else 0


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def garbage_server() -> Iterator[int]:
    """A TCP port that answers every connection with random bytes, like a confused camera."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.sendall(bytes(range(256)) * 64)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    listener.close()


def run_pair(config: Config) -> tuple[Daemon, threading.Thread]:
    daemon = Daemon(config)
    thread, _ = run_in_thread(daemon)
    return daemon, thread


def stop(daemon: Daemon, thread: threading.Thread) -> None:
    daemon.stop()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the daemon did not stop"


def test_rtsp_camera_killed_and_restarted_reconnects_while_the_other_camera_goes_on(
    tmp_path: Path, models_dir: Path, mqtt_broker: BrokerAddress, mqtt_recorder: Any, rtsp_server: Any,
) -> None:
    clip = transcode(models_dir / "demo_bikes_clip" / "bikes.mp4", tmp_path / "gop5.mp4", gop=5)
    server = rtsp_server(clip)
    prefix = unique_prefix()
    recorder = mqtt_recorder(mqtt_broker, f"{prefix}/cameras/#")
    cameras = {
        "gate": CameraConfig(
            url=server.url, reconnect_initial_s=0.5, reconnect_max_s=2.0, open_timeout_s=3.0
        ),
        "street": good_camera(models_dir),
    }
    daemon, thread = run_pair(config_for(tmp_path, models_dir, mqtt_broker, cameras, prefix))
    try:
        wait_until(lambda: frames_of(daemon, "gate") >= 5, 60, "frames from the RTSP camera")
        server.kill()
        status = recorder.wait_for_topic(f"{prefix}/cameras/gate/status",
                                         lambda m: m.json()["state"] == "reconnecting", 30).json()
        assert status["last_error"]
        street_before, gate_before = frames_of(daemon, "street"), frames_of(daemon, "gate")
        time.sleep(3.0)  # the RTSP camera stays down for a while
        wait_until(lambda: frames_of(daemon, "street") > street_before, 20,
                   "the other camera to keep going during the outage")
        assert daemon.statuses["gate"].state != "online", "the outage must still be on"
        recorder.clear()
        server.start()
        recorder.wait_for_topic(f"{prefix}/cameras/gate/status", lambda m: m.json()["state"] == "online", 30)
        wait_until(lambda: frames_of(daemon, "gate") >= gate_before + 5, 30, "frames after the reconnect")
        assert daemon.statuses["gate"].reconnects >= 1
    finally:
        stop(daemon, thread)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "corrupted", "resolution_change"])
def test_bad_stream_is_reported_and_the_other_camera_is_unaffected(
    tmp_path: Path, models_dir: Path, mqtt_broker: BrokerAddress, garbage_server: int, damage: str,
) -> None:
    bikes = models_dir / "demo_bikes_clip" / "bikes.mp4"
    if damage == "garbage":
        url = f"rtsp://127.0.0.1:{garbage_server}/stream"
    elif damage == "truncated":
        url = str(truncated_copy(bikes, tmp_path / "truncated.mp4", keep=0.4))
    elif damage == "corrupted":
        url = str(corrupted_copy(bikes, tmp_path / "corrupted.mp4", fraction=0.05))
    else:
        sizes = [(320, 240), (640, 360), (160, 120)]
        url = str(make_resolution_change_clip(tmp_path / "sizes.ts", sizes, 20))
    cameras = {
        "bad": CameraConfig(url=url, reconnect_initial_s=0.5, reconnect_max_s=1.0, open_timeout_s=2.0),
        "street": good_camera(models_dir),
    }
    daemon, thread = run_pair(config_for(tmp_path, models_dir, mqtt_broker, cameras, unique_prefix()))
    try:
        wait_until(lambda: frames_of(daemon, "street") >= 20, 60, "frames from the good camera")
        wait_until(lambda: "bad" in daemon.statuses and daemon.statuses["bad"].state != "starting", 30,
                   "a status from the bad camera")
        bad = daemon.statuses["bad"]
        if damage == "garbage":
            wait_until(lambda: daemon.statuses["bad"].reconnects >= 2, 30, "retries of the garbage camera")
            assert daemon.statuses["bad"].state == "reconnecting" and frames_of(daemon, "bad") == 0
        elif damage == "resolution_change":
            wait_until(lambda: daemon.statuses["bad"].state == "ended", 30, "the clip to end")
            # 60 frames at 10 fps sampled at 5 fps: 30, in three sizes; the last size is reported
            assert frames_of(daemon, "bad") >= 28, "frames of every size went through the pipeline"
            assert (daemon.statuses["bad"].width, daemon.statuses["bad"].height) == (160, 120)
        else:  # what is readable plays; the damage ends the file without taking anything down
            wait_until(lambda: daemon.statuses["bad"].state == "ended", 30, "the damaged file to end")
        assert bad.camera == "bad"
        before = frames_of(daemon, "street")
        wait_until(lambda: frames_of(daemon, "street") > before + 5, 30, "the good camera to keep going")
    finally:
        stop(daemon, thread)
