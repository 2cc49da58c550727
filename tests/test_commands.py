"""MQTT commands into the real daemon through a real broker: the per-camera detect switch, and
garbage on every topic camd subscribes to (hypothesis) never crashes, hangs or confuses it."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camd.config import CameraConfig, Config
from camd.config.schema import ApiConfig, HomeAssistantConfig, IdentityConfig
from camd.daemon import Daemon
from camd.publish.commands import parse_switch
from tests.support.broker import BrokerAddress, MqttRecorder
from tests.support.daemon import config_for, run_in_thread, unique_prefix
from tests.support.service import wait_for


def switch_config(tmp_path: Path, models_dir: Path, broker: BrokerAddress, prefix: str) -> Config:
    """Two looped real cameras, no identity (not what is tested), a private discovery prefix."""
    clip = str(models_dir / "demo_bikes_clip" / "bikes.mp4")
    cameras = {name: CameraConfig(url=clip, loop=True, realtime=True) for name in ("street", "yard")}
    config = config_for(tmp_path, models_dir, broker, cameras, prefix)
    return config.model_copy(update={
        "identity": IdentityConfig(enabled=False), "api": ApiConfig(enabled=False),
        "homeassistant": HomeAssistantConfig(discovery_prefix=f"ha_{prefix}"),
    })  # fmt: skip


class Running:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.daemon = Daemon(config)
        self.thread, self.result = run_in_thread(self.daemon)

    def stop(self) -> None:
        self.daemon.stop()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "the daemon did not stop"


@pytest.fixture
def running_daemon(tmp_path: Path, models_dir: Path, mqtt_broker: BrokerAddress) -> Iterator[Running]:
    running = Running(switch_config(tmp_path, models_dir, mqtt_broker, unique_prefix()))
    try:
        wait_for(lambda: all(p.stats.frames >= 5 for p in running.daemon.pipelines.values())
                 and len(running.daemon.pipelines) == 2, "frames from both cameras", 60)
        yield running
    finally:
        running.stop()


def detections(running: Running, camera: str) -> int:
    return len(running.daemon.pipelines[camera].stats.detect_ms)


def test_switch_payloads() -> None:
    for text in (b"ON", b"on", b" On\n", b"oN\r\n"):
        assert parse_switch(text) is True, text
    for text in (b"OFF", b"off", b"\tOfF "):
        assert parse_switch(text) is False, text
    for text in (b"", b"ONN", b"1", b"true", b'"ON"', b'{"state": "ON"}', b"\xff\xfeO\x00N\x00",
                 b"O\xffN", b"ON" + b" " * 100, "ÖN".encode()):
        assert parse_switch(text) is None, text


def test_detect_switch_pauses_one_camera_echoes_its_state_and_survives_a_restart(
    tmp_path: Path, models_dir: Path, mqtt_broker: BrokerAddress, mqtt_recorder: Any,
) -> None:
    prefix = unique_prefix()
    config = switch_config(tmp_path, models_dir, mqtt_broker, prefix)
    recorder = mqtt_recorder(mqtt_broker, [f"{prefix}/+/detect/state", f"{prefix}/events",
                                           f"ha_{prefix}/switch/#"])
    running = Running(config)
    try:
        daemon = running.daemon
        switch = recorder.wait_for_topic(f"ha_{prefix}/switch/camd/street_detect/config", timeout=30).json()
        assert switch["command_topic"] == f"{prefix}/street/detect/set"
        assert switch["state_topic"] == f"{prefix}/street/detect/state"
        recorder.wait_for_topic(f"{prefix}/street/detect/state", lambda m: m.text == "ON", 30)
        wait_for(lambda: detections(running, "street") >= 5 and detections(running, "yard") >= 5,
                 "detections on both cameras", 60)
        street = daemon.pipelines["street"]
        announced = {s.event_id for s in street.track_events.open_tracks if s.announced}

        recorder.publish(f"{prefix}/street/detect/set", "OFF")
        recorder.wait_for_topic(f"{prefix}/street/detect/state", lambda m: m.text == "OFF", 10)
        assert not daemon.pipelines["street"].detect_enabled and daemon.pipelines["yard"].detect_enabled
        # The tracks open at that moment run out and end; no new one starts while detection is off.
        wait_for(lambda: not street.track_events.open_tracks, "street's tracks to end", 20)
        # A frame already in the detector when the switch flipped finishes first; frames are
        # processed one after another, so two more frames started means it is done.
        in_flight = street.stats.frames
        wait_for(lambda: street.stats.frames >= in_flight + 2, "two frames after the switch", 20)

        def ended(messages: list[Any]) -> set[str]:
            return {m.json()["after"]["id"] for m in messages if m.topic.endswith("/events")
                    and m.json()["type"] == "end"}

        recorder.wait_for(lambda ms: announced <= ended(ms), 10, "an end event for every open track")
        paused_at, yard_at = detections(running, "street"), detections(running, "yard")
        frames_at = daemon.pipelines["street"].stats.frames
        # At least 3 s (longer on a busy machine): the other camera detects, the switched-off one reads.
        time.sleep(3.0)
        wait_for(lambda: detections(running, "yard") > yard_at, "the other camera to keep detecting", 20)
        wait_for(lambda: daemon.pipelines["street"].stats.frames > frames_at, "the stream to stay open", 20)
        assert detections(running, "street") == paused_at, "the detector ran on a switched-off camera"
        assert "street" in (tmp_path / "state" / "switches.json").read_text()
    finally:
        running.stop()

    recorder.clear()
    again = Running(config)  # the switch stays off across a restart
    try:
        pipelines = again.daemon.pipelines
        wait_for(lambda: len(pipelines) == 2 and pipelines["street"].stats.frames > 10, "frames again", 60)
        assert not again.daemon.pipelines["street"].detect_enabled
        recorder.wait_for_topic(f"{prefix}/street/detect/state", lambda m: m.text == "OFF", 10)
        assert detections(again, "street") == 0
        recorder.publish(f"{prefix}/street/detect/set", "on")
        recorder.wait_for_topic(f"{prefix}/street/detect/state", lambda m: m.text == "ON", 10)
        wait_for(lambda: detections(again, "street") >= 3, "detections once switched back on", 30)
    finally:
        again.stop()


# Payloads a confused or hostile client may send: anything at all, text that is nearly a command,
# JSON where text is expected, and the commands themselves in any case and blanks.
NEAR_MISSES = st.sampled_from([b"ON", b"OFF", b"on", b"off", b"On ", b"\nOFF\t", b"ONN", b"OF", b"0", b"1",
                               b"true", b"null", b'"ON"', b'{"state":"ON"}', b"[\"OFF\"]", b"ON\x00",
                               "ÓN".encode(), b"\xef\xbb\xbfON", b"O\xffN"])
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=60).map(str.encode),
    st.builds(lambda word, pad: (pad + word + pad).encode(), st.sampled_from(["on", "off", "On", "oFF"]),
              st.sampled_from(["", " ", "\n", "\t\t"])),
    NEAR_MISSES,
    st.binary(min_size=20_000, max_size=60_000),
)


def test_garbage_on_every_subscribed_topic_is_refused_with_a_warning_and_valid_commands_still_work(
    running_daemon: Running, mqtt_recorder: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    daemon, config = running_daemon.daemon, running_daemon.config
    prefix = config.mqtt.topic_prefix
    broker = BrokerAddress(config.mqtt.host, config.mqtt.port)
    command_topics = [f"{prefix}/{camera}/detect/set" for camera in ("street", "yard")]
    topics = [*command_topics, f"{config.homeassistant.discovery_prefix}/status"]
    recorder = mqtt_recorder(broker, [f"{prefix}/+/detect/state"])
    recorder.wait_for(lambda ms: len({m.topic for m in ms}) == 2, 10, "both switch states")
    sender = MqttRecorder(broker, f"{prefix}/nothing").start()
    sent: list[tuple[str, bytes]] = []
    caplog.set_level(logging.WARNING)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(topic=st.sampled_from(topics), payload=PAYLOADS)
    def publish_garbage(topic: str, payload: bytes) -> None:
        sender.publish(topic, payload)
        sent.append((topic, payload))

    try:
        publish_garbage()
        for payload in (os.urandom(5_000_000), b"ON" * 1_000_000, b"\x00" * 100_000):  # huge ones
            for topic in topics:
                sender.publish(topic, payload)
                sent.append((topic, payload))
        # A valid command after all that is still obeyed, promptly: nothing crashed or hung.
        recorder.clear()
        sender.publish(command_topics[1], b"OFF")
        recorder.wait_for_topic(f"{prefix}/yard/detect/state", lambda m: m.text == "OFF", 15)
        sender.publish(command_topics[1], b"ON")
        recorder.wait_for_topic(f"{prefix}/yard/detect/state", lambda m: m.text == "ON", 15)
    finally:
        sender.close()

    assert running_daemon.thread.is_alive() and all(t.is_alive() for t in daemon._threads)
    frames = {name: p.stats.frames for name, p in daemon.pipelines.items()}
    wait_for(lambda: all(p.stats.frames > frames[n] for n, p in daemon.pipelines.items()), "frames still", 20)
    invalid_commands = sum(1 for topic, payload in sent
                           if topic in command_topics and parse_switch(payload) is None)
    assert invalid_commands > 50
    warnings = [r for r in caplog.records if "MQTT command on" in r.getMessage()]
    assert warnings, "an invalid command is refused with a warning"
    assert len(warnings) <= invalid_commands, "at most one warning per invalid command"
    for record in warnings:
        assert record.levelno == logging.WARNING and record.exc_info is None
        assert "is not ON or OFF" in record.getMessage() and len(record.getMessage()) < 300
    # Garbage that happened to say ON or OFF echoes state too: wait until every message is handled.
    wait_for(lambda: daemon.switches.refused == invalid_commands, "every invalid command refused", 20)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no error, no traceback"


def test_the_same_switch_works_with_home_assistant_status_garbage_in_between(
    running_daemon: Running, mqtt_recorder: Any,
) -> None:
    """Home Assistant's status topic takes anything; only `online` makes camd re-send discovery."""
    config = running_daemon.config
    broker = BrokerAddress(config.mqtt.host, config.mqtt.port)
    ha = config.homeassistant.discovery_prefix
    recorder = mqtt_recorder(broker, [f"{ha}/switch/#"])
    recorder.wait_for(lambda ms: len(ms) >= 2, 10, "the retained switch configs")
    recorder.clear()
    for payload in (b"offline", b"\xff" * 10, b"ONLINE", b"online\x00", b"x" * 100_000):
        recorder.publish(f"{ha}/status", payload)
    time.sleep(1.0)
    assert not recorder.messages(), "only `online` re-sends discovery"
    recorder.publish(f"{ha}/status", b"online")
    resent = recorder.wait_for(lambda ms: len(ms) >= 2, 10, "discovery re-sent")
    assert all(not m.retain for m in resent)
