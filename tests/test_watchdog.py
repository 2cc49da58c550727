"""The systemd watchdog is fed while frames are processed and not when the pipeline stalls.

The notify socket is a real AF_UNIX datagram socket the test binds, as systemd does; the daemon
is real (real decode, the real SSD detector on the bikes clip); a stall is the shared detector
held busy, as a hung inference call would hold it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from camd.api.status import camera_health
from camd.config.schema import ApiConfig, CameraConfig
from camd.service import PipelineWatchdog, Progress, SystemdNotifier, daemon_progress
from camd.service.systemd import SEND_TIMEOUT_S
from tests.support.service import daemon_config, free_port, running_daemon, wait_for

REPO = Path(__file__).resolve().parents[1]
WATCHDOG_USEC = 400_000  # WatchdogSec=0.4 s: fed every 0.2 s


class NotifySocket:
    """What systemd listens on: a datagram socket; every message is a list of KEY=VALUE lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def receive(self, timeout: float) -> list[str] | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode().split("\n")
        except TimeoutError:
            return None

    def wait_for(self, field: str, timeout: float = 30.0) -> list[str]:
        """Messages up to and including the first carrying `field`."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is None:
                break
            seen.extend(message)
            if field in message:
                return seen
        raise AssertionError(f"no {field} within {timeout:.0f} s; got {seen}")

    def collect(self, seconds: float) -> list[str]:
        """Every field received during the next `seconds`."""
        seen: list[str] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None:
                seen.extend(message)
        return seen

    def drain(self) -> list[str]:
        seen: list[str] = []
        while (message := self.receive(0.01)) is not None:
            seen.extend(message)
        return seen

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


@pytest.fixture
def under_systemd(notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch) -> NotifySocket:
    """The environment systemd gives a Type=notify unit with WatchdogSec."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_socket.path))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    return notify_socket


# --- the notify protocol ---------------------------------------------------------------------------


def test_notifier_sends_each_message_to_the_socket(notify_socket: NotifySocket) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "4000000"})
    assert notifier.watchdog_interval_s == 2.0
    assert notifier.ready("2 cameras online")
    assert notify_socket.receive(2) == ["READY=1", "STATUS=2 cameras online"]
    assert notifier.watchdog()
    assert notify_socket.receive(2) == ["WATCHDOG=1"]
    assert notifier.status("line one\nline two")
    assert notify_socket.receive(2) == ["STATUS=line one line two"]
    assert notifier.stopping()
    assert notify_socket.receive(2) == ["STOPPING=1"]
    notifier.close()


def test_a_manager_that_does_not_read_never_blocks_the_notifier(notify_socket: NotifySocket) -> None:
    """The socket's queue holds net.unix.max_dgram_qlen datagrams (10 by default); past that a plain
    send blocks until the manager reads, and a blocked watchdog thread would stop noticing stalls."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "400000"})
    queue_length = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    delivered = 0
    while delivered <= 10 * queue_length and notifier.watchdog():
        delivered += 1
    assert queue_length <= delivered <= queue_length + 1  # Linux takes one more than the limit
    started = time.monotonic()
    assert not notifier.watchdog()
    assert time.monotonic() - started < 5 * SEND_TIMEOUT_S, "the send waited without bound"
    assert len(notify_socket.drain()) == delivered
    assert notifier.watchdog(), "sends again once the manager has read"
    notifier.close()


def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"camd-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    listener.settimeout(2)
    try:
        assert SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert listener.recv(100) == b"READY=1"
    finally:
        listener.close()


def test_outside_systemd_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled and not notifier.watchdog_enabled
    assert not notifier.ready() and not notifier.watchdog()
    # A socket that went away is logged once and not raised: the cameras keep running.
    gone = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not gone.ready()


def test_watchdog_usec_for_another_process_is_ignored() -> None:
    other = SystemdNotifier({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert not other.watchdog_enabled
    ours = SystemdNotifier(
        {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert ours.watchdog_enabled


# --- the stall rule (explicit clock, no sleeping) ------------------------------------------------


def test_stall_rule(notify_socket: NotifySocket) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"})
    state = {"progress": Progress(0, frozenset({"door"}))}
    watchdog = PipelineWatchdog(notifier, lambda: state["progress"], stall_s=10)
    assert watchdog.check(now=100.0)  # first look: progress starts counting here
    assert watchdog.check(now=109.0)  # 9 s without a frame: still within stall_s
    assert not watchdog.check(now=110.5) and watchdog.stalled  # camera online, no frames: stalled
    state["progress"] = Progress(5, frozenset({"door"}))
    assert watchdog.check(now=111.0) and not watchdog.stalled  # frames again: fed again
    state["progress"] = Progress(5, frozenset())  # the camera dropped: nothing to process is not a stall
    assert watchdog.check(now=200.0)
    state["progress"] = Progress(5, frozenset({"door"}))  # back online: a full stall_s to deliver
    assert watchdog.check(now=205.0)
    assert not watchdog.check(now=215.0)
    fed = [m for m in notify_socket.drain() if m == "WATCHDOG=1"]
    assert len(fed) == 5 and watchdog.feeds == 5


# --- a real daemon -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_healthy_daemon_keeps_feeding_and_stalled_one_stops(
    under_systemd: NotifySocket, tmp_path: Path, models_dir: Path
) -> None:
    # 3 s: long enough that a busy consumer (a track finalised with its crop and store writes on a
    # loaded machine) is not a stall. Nobody reads the notify socket while the test waits for the
    # stall, so its queue fills in 2 s: the notifier's bounded send keeps the checks going.
    config = daemon_config(tmp_path / "state", models_dir, stall_s=3.0)
    with running_daemon(config) as daemon:
        under_systemd.wait_for("READY=1")
        wait_for(lambda: daemon_progress(daemon).frames >= 3, "frames to be processed")
        under_systemd.drain()
        # healthy: frames flow, WATCHDOG=1 keeps arriving
        for _ in range(5):
            under_systemd.wait_for("WATCHDOG=1", timeout=5)
        assert daemon.services is not None
        watchdog = daemon.services.watchdog
        assert not watchdog.stalled

        # stalled: the shared detector never returns (the test holds the inference workers'
        # detectors, as a hung inference call would)
        assert daemon.pool is not None
        with daemon.pool.paused():
            assert watchdog.stalled_event.wait(15), "the watchdog did not notice the stall"
            assert daemon.pipelines["street"].source.status.state == "online"
            under_systemd.drain()
            window = under_systemd.collect(5 * WATCHDOG_USEC / 1e6)  # five feeding intervals
            assert "WATCHDOG=1" not in window, f"fed while stalled: {window}"
            frames_while_stalled = daemon_progress(daemon).frames
            # the camera keeps delivering: its inference queue stays bounded, the oldest frames go
            street = daemon.pipelines["street"]
            wait_for(lambda: street.stats.dropped > 0, "frames dropped while the detector hangs")
            assert street.stats.queued <= config.detector.queue_frames
            dropped = street.stats.dropped
            health = camera_health(street, time.time())
            assert health["dropped_inference"] >= dropped > 0
            assert health["dropped"] >= health["dropped_inference"]

        # released: frames flow again and so does the watchdog
        under_systemd.wait_for("WATCHDOG=1", timeout=15)
        assert daemon_progress(daemon).frames > frames_while_stalled
        assert not watchdog.stalled
    assert "STOPPING=1" in under_systemd.wait_for("STOPPING=1", timeout=5)


@pytest.mark.slow
def test_reconnecting_camera_is_not_a_stall(
    under_systemd: NotifySocket, tmp_path: Path, models_dir: Path
) -> None:
    """A dead camera retries on its own backoff; restarting camd would not bring it back."""
    dead = CameraConfig(url="rtsp://viewer:pw@127.0.0.1:9/nothing", open_timeout_s=1.0, reconnect_max_s=1.0)
    config = daemon_config(tmp_path / "state", models_dir, stall_s=0.5, cameras={"dead": dead})
    with running_daemon(config) as daemon:
        under_systemd.wait_for("READY=1")
        wait_for(lambda: daemon.pipelines["dead"].source.status.reconnects >= 2, "two failed attempts")
        under_systemd.drain()
        for _ in range(3):
            under_systemd.wait_for("WATCHDOG=1", timeout=5)
        assert daemon.services is not None and not daemon.services.watchdog.stalled


@pytest.mark.slow
def test_camd_run_sends_ready_watchdog_and_stopping(
    under_systemd: NotifySocket, tmp_path: Path, models_dir: Path
) -> None:
    """The real command line, as systemd starts it: READY once running, STOPPING on SIGTERM; a
    camera that cannot be reached does not hold READY back, and its password stays out of the log."""
    config_file = tmp_path / "camd.yaml"
    config_file.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"models_dir: {models_dir}\n"
        "mqtt: {enabled: false}\n"
        f"api: {{port: {free_port()}}}\n"
        "cameras:\n"
        f"  street: {{url: {models_dir / 'demo_bikes_clip' / 'bikes.mp4'}, loop: true, realtime: true}}\n"
        "  gate: {url: 'rtsp://viewer:${GATE_PASSWORD}@127.0.0.1:9/s1', open_timeout_s: 1}\n"  # nothing there
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "GATE_PASSWORD": "Gate-s3cret"}
    process = subprocess.Popen(
        [sys.executable, "-m", "camd.cli", "run", "--config", str(config_file)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        seen = under_systemd.wait_for("READY=1", timeout=60)
        assert any(line.startswith("STATUS=") for line in seen)
        under_systemd.wait_for("WATCHDOG=1", timeout=10)
        # Past the dead camera's 1 s open timeout: its first failure is logged before the stop
        # (a fast machine sent SIGTERM before the attempt had ended, with nothing yet to log).
        assert any("WATCHDOG=1" in field for field in under_systemd.collect(2.5)), "fed while running"
        process.send_signal(signal.SIGTERM)
        under_systemd.wait_for("STOPPING=1", timeout=10)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "received SIGTERM, stopping" in output
    # the journal: the dead camera's trouble is logged by name, its password never
    assert re.search(r"camera gate: .*viewer:\*\*\*@127\.0\.0\.1", output), output
    assert "Gate-s3cret" not in output


def test_api_config_is_optional_for_the_watchdog(tmp_path: Path, models_dir: Path) -> None:
    """With the API off the services still run (notify and watchdog only)."""
    config = daemon_config(tmp_path / "state", models_dir, api=ApiConfig(enabled=False))
    with running_daemon(config) as daemon:
        assert daemon.services is not None and daemon.services.api is None
        wait_for(lambda: daemon_progress(daemon).frames >= 1, "a processed frame")
    assert not (tmp_path / "state" / "api-token").exists()
