"""MqttPublisher against real brokers: order, QoS 1, availability, outages, restarts, shutdown."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from camd.config.schema import MqttConfig
from camd.publish.mqtt import WINDOW, MqttPublisher, encode_payload
from camd.publish.outbox import Outbox
from tests.support.broker import (
    LOCALHOST,
    BrokerAddress,
    BrokerProcess,
    MqttRecorder,
    Received,
    TcpGate,
    broker_workdir,
    make_tls_files,
    mosquitto_binary,
    retained_value,
)

REPO = Path(__file__).resolve().parents[1]
BOTH_BROKERS = pytest.mark.parametrize("private_broker", ["mosquitto", "amqtt"], indirect=True)
SECRET = "hunter2-not-in-logs"

Recorders = Callable[[BrokerAddress, str | list[str]], MqttRecorder]
Gates = Callable[[BrokerAddress], TcpGate]


def config_for(address: BrokerAddress, **overrides: object) -> MqttConfig:
    """A config with a topic prefix and client id of its own, so tests can share a broker."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "host": address.host, "port": address.port, "client_id": f"camd-test-{tag}",
        "topic_prefix": f"camdtest/{tag}", "keepalive_s": 10,
    }
    return MqttConfig.model_validate({**values, **overrides})


def event(run: str, i: int) -> dict[str, object]:
    return {"type": "new", "after": {"id": f"{run}-{i}", "camera": "front", "label": "person", "score": 0.9}}


def event_index(message: Received) -> int:
    return int(message.json()["after"]["id"].rsplit("-", 1)[1])


def assert_all_in_order(messages: list[Received], count: int) -> None:
    """Every event 0..count-1 arrived, first arrivals in order; a repeat is allowed only as an
    exact copy of an earlier event (a QoS 1 re-send)."""
    first_seen: dict[int, bytes] = {}
    order: list[int] = []
    for message in messages:
        index = event_index(message)
        if index in first_seen:
            assert message.payload == first_seen[index], f"event {index} repeated with a different payload"
            continue
        first_seen[index] = message.payload
        order.append(index)
    assert order == list(range(count)), f"order broken or events lost: {order[:20]}... ({len(order)} seen)"


def have_events(count: int) -> Callable[[list[Received]], bool]:
    def check(messages: list[Received]) -> bool:
        return len({event_index(m) for m in messages if m.topic.endswith("/events")}) >= count

    return check


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout} s")
        time.sleep(0.02)


@pytest.fixture
def publishers() -> Iterator[Callable[[MqttConfig, Path], MqttPublisher]]:
    made: list[MqttPublisher] = []

    def make(config: MqttConfig, outbox: Path) -> MqttPublisher:
        publisher = MqttPublisher(config, outbox)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.stop(timeout=1)


def test_events_delivered_in_order_with_qos1_and_availability(
    mqtt_broker: BrokerAddress, mqtt_recorder: Recorders, publishers: Callable[..., MqttPublisher],
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = config_for(mqtt_broker, username="camd", password=SECRET)
    recorder = mqtt_recorder(mqtt_broker, f"{config.topic_prefix}/#")
    publisher = publishers(config, tmp_path / "outbox.sqlite3")
    publisher.start()
    wait_until(lambda: publisher.connected, 10, "connected")
    online = recorder.wait_for_topic(f"{config.topic_prefix}/available", lambda m: m.text == "online")
    assert online.qos == 1

    for i in range(200):
        publisher.publish_event(event("run", i))
    messages = recorder.wait_for(have_events(200), what="200 events")
    events = [m for m in messages if m.topic == f"{config.topic_prefix}/events"]
    assert_all_in_order(events, 200)
    assert all(m.qos == 1 and not m.retain for m in events)
    assert events[0].json() == event("run", 0)
    wait_until(lambda: publisher.stats()["queued"] == 0, 10, "outbox drained")
    stats = publisher.stats()
    assert stats["delivered"] == 200 and stats["dropped"] == 0

    publisher.stop()
    assert not publisher.connected
    assert retained_value(mqtt_broker, f"{config.topic_prefix}/available") == "offline"
    assert SECRET not in caplog.text
    assert "camdtest" in caplog.text or config.host in caplog.text, "the publisher logs what it connects to"


def test_last_will_says_offline_when_the_process_is_killed(
    mqtt_broker: BrokerAddress, mqtt_recorder: Recorders, tmp_path: Path
) -> None:
    config = config_for(mqtt_broker, keepalive_s=5)
    available = f"{config.topic_prefix}/available"
    recorder = mqtt_recorder(mqtt_broker, available)
    script = (
        "import sys, time\nfrom pathlib import Path\n"
        "from camd.config.schema import MqttConfig\nfrom camd.publish.mqtt import MqttPublisher\n"
        "publisher = MqttPublisher(MqttConfig.model_validate_json(sys.argv[1]), Path(sys.argv[2]))\n"
        "publisher.start()\n"
        "while not publisher.connected: time.sleep(0.02)\n"
        "print('connected', flush=True)\ntime.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, config.model_dump_json(), str(tmp_path / "outbox.sqlite3")],
        stdout=subprocess.PIPE, env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"connected"
        recorder.wait_for_topic(available, lambda m: m.text == "online")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        recorder.wait_for_topic(available, lambda m: m.text == "offline", timeout=20)
        assert retained_value(mqtt_broker, available) == "offline"
    finally:
        proc.kill()
        proc.wait(10)


@BOTH_BROKERS
def test_broker_down_at_start_events_queue_then_all_delivered_in_order(
    private_broker: BrokerProcess, tcp_gate: Gates, mqtt_recorder: Recorders,
    publishers: Callable[..., MqttPublisher], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="camd.publish.mqtt")
    gate = tcp_gate(private_broker.address)
    gate.close()  # the publisher reaches the broker only through the gate: it opens once the recorder listens
    private_broker.stop()
    config = config_for(gate.address)
    publisher = publishers(config, tmp_path / "outbox.sqlite3")
    publisher.start()
    for i in range(50):
        publisher.publish_event(event("down", i))
    assert not publisher.connected
    assert publisher.stats()["queued"] == 50
    # paho retries every 1 s and more; the outage is logged once, the retries only at debug level.
    wait_until(lambda: "still unavailable" in caplog.text, 15, "a second connection attempt")
    assert sum("unavailable (" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING) == 1

    private_broker.start()
    recorder = mqtt_recorder(private_broker.address, f"{config.topic_prefix}/#")
    gate.open()
    messages = recorder.wait_for(have_events(50), timeout=40, what="50 queued events")
    assert_all_in_order([m for m in messages if m.topic.endswith("/events")], 50)
    wait_until(lambda: publisher.stats()["queued"] == 0, 10, "outbox drained")
    assert retained_value(private_broker.address, f"{config.topic_prefix}/available") == "online"


def _settled_deliveries(publisher: MqttPublisher) -> int:
    """`delivered` once the sender has counted every PUBACK that arrived before the cut (each is an
    outbox commit, slow on a loaded machine): no ack waiting and the count still for 0.5 s."""
    deadline = time.monotonic() + 10
    last, still_since = publisher.stats()["delivered"], time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = publisher.stats()["delivered"]
        if now != last or not publisher._acks.empty():
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= 0.5:
            break
    return last


@BOTH_BROKERS
def test_broker_restart_mid_burst_loses_nothing_and_keeps_order(
    private_broker: BrokerProcess, tcp_gate: Gates, mqtt_recorder: Recorders,
    publishers: Callable[..., MqttPublisher], tmp_path: Path,
) -> None:
    gate = tcp_gate(private_broker.address)
    config = config_for(gate.address)
    recorder = mqtt_recorder(private_broker.address, f"{config.topic_prefix}/#")
    publisher = publishers(config, tmp_path / "outbox.sqlite3")
    publisher.start()
    wait_until(lambda: publisher.connected, 10, "connected")
    total = 300

    for i in range(100):
        publisher.publish_event(event("burst", i))
    recorder.wait_for(have_events(30), what="the burst under way")
    # Outage while events are in flight: the publisher's link drops, then the broker itself goes.
    gate.close()
    wait_until(lambda: not publisher.connected, 10, "publisher noticed the outage")
    acknowledged = _settled_deliveries(publisher)
    # QoS 1 hands responsibility to the broker at its PUBACK, and amqtt PUBACKs before it forwards:
    # let it forward what it acknowledged, else its stop (no persistence) loses those, not camd.
    recorder.wait_for(have_events(acknowledged), what="the broker forwarded what it acknowledged")
    private_broker.stop()
    for i in range(100, 200):
        publisher.publish_event(event("burst", i))
    assert publisher.stats()["queued"] >= 100
    time.sleep(2)  # a few seconds of outage: the publisher keeps retrying
    private_broker.start()
    recorder.wait_ready(2)  # re-subscribed on the restarted broker before the publisher is let back in
    gate.open()
    for i in range(200, total):
        publisher.publish_event(event("burst", i))

    messages = recorder.wait_for(have_events(total), timeout=60, what=f"{total} events")
    assert_all_in_order([m for m in messages if m.topic.endswith("/events")], total)
    wait_until(lambda: publisher.stats()["queued"] == 0, 10, "outbox drained")
    stats = publisher.stats()
    assert stats["reconnects"] >= 1 and stats["dropped"] == 0 and stats["delivered"] >= total
    # The restarted broker lost its retained messages; the reconnect said online again.
    assert retained_value(private_broker.address, f"{config.topic_prefix}/available") == "online"


@BOTH_BROKERS
def test_stop_while_broker_down_returns_promptly_and_next_start_delivers(
    private_broker: BrokerProcess, mqtt_recorder: Recorders, tmp_path: Path
) -> None:
    outbox_path = tmp_path / "outbox.sqlite3"
    private_broker.stop()
    config = config_for(private_broker.address)
    publisher = MqttPublisher(config, outbox_path)
    publisher.start()
    for i in range(20):
        publisher.publish_event(event("later", i))
    assert_stop_returns(publisher, timeout=1.0)
    with Outbox(outbox_path) as box:
        assert len(box) == 20, "undelivered events stay on disk"

    private_broker.start()
    recorder = mqtt_recorder(private_broker.address, f"{config.topic_prefix}/events")
    publisher = MqttPublisher(config, outbox_path)
    try:
        publisher.start()
        messages = recorder.wait_for(have_events(20), timeout=30, what="20 events from the previous run")
        assert_all_in_order(messages, 20)
    finally:
        publisher.stop()
    with Outbox(outbox_path) as box:
        assert len(box) == 0


def test_nothing_leaves_the_outbox_before_the_broker_acknowledges_it(
    mqtt_broker: BrokerAddress, tcp_gate: Gates, mqtt_recorder: Recorders, tmp_path: Path
) -> None:
    outbox_path = tmp_path / "outbox.sqlite3"
    gate = tcp_gate(mqtt_broker)
    config = config_for(gate.address)
    publisher = MqttPublisher(config, outbox_path)
    publisher.start()
    wait_until(lambda: publisher.connected, 10, "connected")
    gate.freeze()  # PUBLISH packets vanish; no PUBACK will come
    for i in range(30):
        publisher.publish_event(event("unacked", i))
    wait_until(lambda: publisher.stats()["inflight"] == WINDOW, 10, "a full window sent, unacknowledged")
    assert_stop_returns(publisher, timeout=1.0)
    with Outbox(outbox_path) as box:
        assert len(box) == 30, "events handed to the network but never acknowledged must stay on disk"

    recorder = mqtt_recorder(mqtt_broker, f"{config.topic_prefix}/events")
    publisher = MqttPublisher(config_for(mqtt_broker, topic_prefix=config.topic_prefix), outbox_path)
    try:
        publisher.start()
        assert_all_in_order(recorder.wait_for(have_events(30), what="30 re-sent events"), 30)
    finally:
        publisher.stop()


def test_stop_returns_when_the_broker_never_answers(tmp_path: Path) -> None:
    # A TCP listener that never accepts: connect succeeds, no CONNACK ever comes.
    with socket.socket() as black_hole:
        black_hole.bind((LOCALHOST, 0))
        black_hole.listen(1)
        publisher = MqttPublisher(config_for(BrokerAddress(LOCALHOST, black_hole.getsockname()[1])),
                                  tmp_path / "outbox.sqlite3")
        publisher.start()
        publisher.publish_event(event("hole", 0))
        time.sleep(0.3)  # let it get stuck waiting for a CONNACK
        assert not publisher.connected
        assert_stop_returns(publisher, timeout=1.0)


def assert_stop_returns(publisher: MqttPublisher, timeout: float) -> None:
    """stop(timeout) must not hang (the bound here is generous: a hang guard, not a speed test)."""
    stopper = threading.Thread(target=publisher.stop, kwargs={"timeout": timeout})
    stopper.start()
    stopper.join(timeout + 10)
    assert not stopper.is_alive(), "stop() hung with the broker down"


@BOTH_BROKERS
def test_retained_state_and_subscriptions_are_restored_after_a_broker_restart(
    private_broker: BrokerProcess, tcp_gate: Gates, mqtt_recorder: Recorders,
    publishers: Callable[..., MqttPublisher], tmp_path: Path,
) -> None:
    gate = tcp_gate(private_broker.address)
    config = config_for(gate.address)
    status_topic = f"{config.topic_prefix}/front/status"
    command_topic = f"{config.topic_prefix}-ha/status"
    received: list[tuple[str, bytes]] = []
    got = threading.Event()

    def on_command(topic: str, payload: bytes) -> None:
        received.append((topic, payload))
        got.set()

    publisher = publishers(config, tmp_path / "outbox.sqlite3")
    # Set before the first connect: kept in memory, sent on connect, never through the outbox.
    publisher.publish("front/status", {"state": "streaming"}, retain=True, durable=False)
    publisher.subscribe(command_topic, on_command)
    assert publisher.stats()["queued"] == 0
    publisher.start()
    wait_until(lambda: publisher.connected, 10, "connected")
    assert json.loads(retained_value(private_broker.address, status_topic)) == {"state": "streaming"}
    sender = mqtt_recorder(private_broker.address, "camd-test-unused/#")
    wait_until(lambda: sender_delivers(sender, command_topic, b"online", got), 10, "subscription works")

    gate.close()
    private_broker.stop()
    wait_until(lambda: not publisher.connected, 10, "publisher noticed the outage")
    publisher.publish("front/status", {"state": "reconnecting"}, retain=True, durable=False)
    private_broker.start()
    gate.open()
    wait_until(lambda: publisher.connected, 40, "reconnected")
    assert json.loads(retained_value(private_broker.address, status_topic)) == {"state": "reconnecting"}
    got.clear()
    sender.wait_ready(2)
    wait_until(lambda: sender_delivers(sender, command_topic, b"online again", got), 10, "re-subscribed")
    assert received[-1] == (command_topic, b"online again")


def sender_delivers(sender: MqttRecorder, topic: str, payload: bytes, got: threading.Event) -> bool:
    """Publish and report whether the subscriber's callback fired (SUBACK may lag the CONNACK)."""
    sender.publish(topic, payload)
    return got.wait(0.5)


def test_bad_tls_ca_is_reported_before_connecting(tmp_path: Path) -> None:
    ca = tmp_path / "missing-ca.pem"
    ca.write_text("placeholder")
    config = MqttConfig(tls=True, tls_ca=ca)  # the config check passed; then the file went away
    ca.unlink()
    with pytest.raises(FileNotFoundError, match="tls_ca"):
        MqttPublisher(config, tmp_path / "outbox.sqlite3")
    Outbox(tmp_path / "outbox.sqlite3").close()  # the failed publisher left the outbox free


def test_numpy_values_in_an_event_are_plain_json_and_unknown_types_rejected() -> None:
    np = pytest.importorskip("numpy")
    payload = {"score": np.float32(0.5), "box": np.array([1, 2, 3, 4]), "frames": np.int64(7)}
    assert json.loads(encode_payload(payload)) == {"score": 0.5, "box": [1, 2, 3, 4], "frames": 7}
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_payload({"when": object()})


@pytest.fixture
def secure_broker() -> Iterator[BrokerProcess]:
    """mosquitto over TLS with one user: the setup a careful household runs."""
    if mosquitto_binary() is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    workdir = broker_workdir()
    broker = BrokerProcess("mosquitto", workdir, users={"camd": SECRET}, tls=make_tls_files(workdir))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_tls_with_credentials_delivers_and_never_logs_the_password(
    secure_broker: BrokerProcess, publishers: Callable[..., MqttPublisher], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert secure_broker.tls is not None
    ca = secure_broker.tls.ca
    config = config_for(secure_broker.address, tls=True, tls_ca=ca, username="camd", password=SECRET)
    recorder = MqttRecorder(secure_broker.address, f"{config.topic_prefix}/#", tls_ca=ca,
                            username="camd", password=SECRET).start()
    try:
        publisher = publishers(config, tmp_path / "outbox.sqlite3")
        publisher.start()
        for i in range(5):
            publisher.publish_event(event("tls", i))
        messages = recorder.wait_for(have_events(5), what="5 events over TLS")
        assert_all_in_order([m for m in messages if m.topic.endswith("/events")], 5)
    finally:
        recorder.close()
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"username": "camd", "password": "wrong-password"}, "refused"),
        ({"username": "camd", "password": SECRET, "tls_ca": None}, "CERTIFICATE_VERIFY_FAILED"),
    ],
    ids=["wrong-password", "untrusted-certificate"],
)
def test_rejected_connection_is_logged_once_and_events_stay_queued(
    secure_broker: BrokerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    overrides: dict[str, object], why: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="camd.publish.mqtt")
    assert secure_broker.tls is not None
    config = config_for(secure_broker.address, **{"tls": True, "tls_ca": secure_broker.tls.ca, **overrides})
    publisher = MqttPublisher(config, tmp_path / "outbox.sqlite3")
    publisher.start()
    publisher.publish_event(event("rejected", 0))
    wait_until(lambda: "still unavailable" in caplog.text, 15, "a second connection attempt")
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno >= logging.WARNING and r.name == "camd.publish.mqtt"]
    assert len(warnings) == 1 and why in warnings[0], warnings
    assert not publisher.connected
    assert publisher.stats()["queued"] == 1
    assert_stop_returns(publisher, timeout=1.0)
    assert "wrong-password" not in caplog.text and SECRET not in caplog.text
