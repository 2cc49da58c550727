"""Real MQTT brokers for tests, a TCP gate to cut a client off, and a recorder that collects messages.

Fixtures:
- ``mqtt_broker`` (session): a broker that answers; 127.0.0.1:1883 when something answers there,
  otherwise one started for the session.
- ``private_broker`` (function): a broker the test owns and may ``stop()`` / ``start()`` on the
  same port. mosquitto when the binary is present, else amqtt; choose with
  ``@pytest.mark.parametrize("private_broker", ["mosquitto", "amqtt"], indirect=True)``.
- ``mqtt_recorder``: factory ``mqtt_recorder(address, topics) -> MqttRecorder`` (closed at teardown).
- ``tcp_gate``: factory ``tcp_gate(address) -> TcpGate`` (closed at teardown): a loopback forwarder
  a test opens and closes to take "the broker" away from one client while others keep it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

LOCALHOST = "127.0.0.1"
DEFAULT_PORT = 1883
BROKER_KINDS = ("mosquitto", "amqtt")
START_TIMEOUT_S = 15.0


class BrokerAddress(NamedTuple):
    host: str
    port: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def mqtt_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when an MQTT broker accepts an anonymous MQTT 3.1.1 CONNECT at host:port."""
    client_id = f"camd-probe-{uuid.uuid4().hex[:8]}".encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x3c"  # protocol name, level 4, clean session, keepalive 60
    body = variable + len(client_id).to_bytes(2, "big") + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(bytes([0x10, len(body)]) + body)
            connack = sock.recv(4)
            if len(connack) == 4 and connack[0] == 0x20 and connack[3] == 0:
                sock.sendall(b"\xe0\x00")  # DISCONNECT
                return True
    except OSError:
        pass
    return False


def mosquitto_binary() -> str | None:
    # /usr/sbin is not on every PATH (non-root shells), but Debian installs mosquitto there.
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin:/sbin")


def default_broker_kind() -> str:
    return "mosquitto" if mosquitto_binary() else "amqtt"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path, host: str = LOCALHOST) -> TlsFiles:
    """A throw-away CA and a server certificate for ``host`` (IP SAN), made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca_key, csr = directory / "ca.key", directory / "server.csr"
    ext = directory / "san.ext"
    ext.write_text(f"subjectAltName=IP:{host}\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=camd test CA",
            "-keyout", str(ca_key), "-out", str(files.ca))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}",
            "-keyout", str(files.key), "-out", str(csr))
    openssl("x509", "-req", "-in", str(csr), "-CA", str(files.ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "2", "-extfile", str(ext), "-out", str(files.cert))
    for path in (files.ca, files.cert, files.key):
        path.chmod(0o644)  # readable by mosquitto after it drops root privileges; throw-away test key
    return files


def broker_workdir() -> Path:
    """A temporary directory a broker that dropped root privileges can still read."""
    workdir = Path(tempfile.mkdtemp(prefix="camd-broker-"))
    workdir.chmod(0o755)
    return workdir


class BrokerProcess:
    """A broker in a subprocess on a fixed loopback port: stop() and start() again keep the port.
    Nothing persists across a restart (no retained messages, no sessions), like a fresh broker."""

    def __init__(
        self, kind: str, workdir: Path, port: int | None = None, *,
        users: dict[str, str] | None = None, tls: TlsFiles | None = None,
    ) -> None:
        """users: only these may connect (mosquitto only); tls: serve MQTT over TLS (mosquitto only)."""
        if kind not in BROKER_KINDS:
            raise ValueError(f"unknown broker kind {kind!r}; use one of {BROKER_KINDS}")
        if (users or tls) and kind != "mosquitto":
            raise ValueError("users and tls are supported with mosquitto only")
        self.kind = kind
        self.users = users
        self.tls = tls
        self.host = LOCALHOST
        self.port = port or free_port()
        self.workdir = workdir
        self.log_path = workdir / f"{kind}-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress(self.host, self.port)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            binary = mosquitto_binary()
            if binary is None:
                raise RuntimeError("mosquitto binary not found (apt-get install mosquitto)")
            lines = [f"listener {self.port} {self.host}", "persistence false", "log_dest stderr",
                     "log_type error", "log_type warning"]
            if self.users:
                password_file = self.workdir / f"passwd-{self.port}"
                password_file.write_text("")
                for user, password in self.users.items():
                    subprocess.run(["mosquitto_passwd", "-b", str(password_file), user, password], check=True)
                password_file.chmod(0o644)  # mosquitto may have dropped root for its own user
                lines += ["allow_anonymous false", f"password_file {password_file}"]
            else:
                lines.append("allow_anonymous true")
            if self.tls:
                lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.cert}", f"keyfile {self.tls.key}"]
            config = self.workdir / f"mosquitto-{self.port}.conf"
            config.write_text("\n".join(lines) + "\n")
            return [binary, "-c", str(config)]
        config = self.workdir / f"amqtt-{self.port}.yaml"
        config.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: {self.host}:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        )
        return [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(config)]

    def start(self) -> None:
        """Start and wait until the port answers MQTT; raises with the broker's log if it does not."""
        if self.running:
            return
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                self._command(), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if self._answers():
                return
            time.sleep(0.05)
        self.stop(kill=True)
        raise RuntimeError(f"{self.kind} did not answer on {self.host}:{self.port}; log:\n{self.log_tail()}")

    def _answers(self) -> bool:
        if not (self.tls or self.users):
            return mqtt_answers(self.host, self.port, timeout=0.5)
        try:  # an anonymous plain-text probe would be refused: the listening port is enough
            socket.create_connection((self.host, self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        """Stop the broker (SIGTERM, or SIGKILL with kill=True, as a crash would) and wait for it."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> BrokerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TcpGate:
    """A loopback TCP forwarder to a broker. close() drops every forwarded connection and refuses
    new ones (what a client sees when its broker goes away); open() listens again on the same port.
    freeze() keeps connections up but silently discards what they carry (a dead link that TCP has
    not noticed yet); thaw() forwards again."""

    def __init__(self, target: BrokerAddress, port: int | None = None) -> None:
        self.target = target
        self.host = LOCALHOST
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._connections: list[socket.socket] = []
        self._frozen = threading.Event()

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress(self.host, self.port)

    def freeze(self) -> None:
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def open(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        listener.settimeout(0.1)  # accept() polls so that close() is noticed promptly
        self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._accept_thread.start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(2)
            self._accept_thread = None
        with self._lock:
            connections, self._connections = self._connections, []
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()  # broker down behind the gate: the client sees a dropped connection
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self._frozen.is_set():
                    sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


_recorder_ids = itertools.count()


class MqttRecorder:
    """A real paho client that subscribes to ``topics`` and records every message, in arrival order.
    Reconnects by itself and re-subscribes (after a broker restart); ``ready_count`` counts the
    connections on which all subscriptions were granted."""

    def __init__(
        self, address: BrokerAddress | tuple[str, int], topics: str | Sequence[str], *,
        tls_ca: Path | None = None, username: str | None = None, password: str | None = None,
    ) -> None:
        self.address = BrokerAddress(*address)
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self._cond = threading.Condition()
        self._messages: list[Received] = []
        self._ready_count = 0
        self._pending_suback: int | None = None
        client_id = f"camd-recorder-{os.getpid()}-{next(_recorder_ids)}-{uuid.uuid4().hex[:6]}"
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
        self.client.reconnect_delay_set(0.2, 1)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self, timeout: float = 10.0) -> MqttRecorder:
        self.client.connect(self.address.host, self.address.port, keepalive=10)
        self.client.loop_start()
        self.wait_ready(1, timeout)
        return self

    def _on_connect(self, client: paho.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if not reason.is_failure:
            _, mid = client.subscribe([(topic, 1) for topic in self.topics])
            with self._cond:
                self._pending_suback = mid

    def _on_subscribe(self, _c: paho.Client, _u: object, mid: int, reasons: list[Any], _p: object) -> None:
        with self._cond:
            if mid == self._pending_suback and not any(r.is_failure for r in reasons):
                self._ready_count += 1
                self._cond.notify_all()

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        with self._cond:
            self._messages.append(Received(message.topic, message.payload, message.qos, bool(message.retain)))
            self._cond.notify_all()

    @property
    def ready_count(self) -> int:
        return self._ready_count

    def wait_ready(self, count: int, timeout: float = 10.0) -> None:
        """Wait until subscribed on the count-th connection (count = ready_count + 1 after a restart)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready_count >= count, timeout):
                raise AssertionError(f"recorder not subscribed to {self.topics} on {self.address} "
                                     f"in {timeout} s")

    def messages(self, topic: str | None = None) -> list[Received]:
        with self._cond:
            return [m for m in self._messages if topic is None or m.topic == topic]

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0, what: str = "condition"
    ) -> list[Received]:
        """Wait until ``predicate(all messages so far)`` holds; returns the messages. On timeout an
        AssertionError shows how many arrived and the last few."""
        with self._cond:
            if self._cond.wait_for(lambda: predicate(self._messages), timeout):
                return list(self._messages)
            tail = [(m.topic, m.payload[:80]) for m in self._messages[-5:]]
            raise AssertionError(f"MQTT {what} not met in {timeout} s: {len(self._messages)} message(s), "
                                 f"last {tail}")

    def wait_for_topic(self, topic: str, predicate: Callable[[Received], bool] = lambda m: True,
                       timeout: float = 10.0) -> Received:
        """The first message on ``topic`` that satisfies ``predicate`` (waiting for it if needed)."""
        def found(messages: list[Received]) -> bool:
            return any(m.topic == topic and predicate(m) for m in messages)

        messages = self.wait_for(found, timeout, what=f"message on {topic}")
        return next(m for m in messages if m.topic == topic and predicate(m))

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> MqttRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def retained_value(address: BrokerAddress, topic: str, timeout: float = 10.0) -> str:
    """The retained payload a fresh subscriber gets on ``topic``. A value that arrives live (it was
    being published just as we subscribed) proves no retention: subscribe afresh until one arrives
    flagged retained."""
    deadline = time.monotonic() + timeout
    while True:
        with MqttRecorder(address, topic).start() as recorder:
            first = recorder.wait_for_topic(topic, timeout=max(0.1, deadline - time.monotonic()))
        if first.retain:
            return first.text
        if time.monotonic() > deadline:
            raise AssertionError(f"no retained message on {topic}: only live ones ({first.text!r})")


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerAddress]:
    if mqtt_answers(LOCALHOST, DEFAULT_PORT):
        yield BrokerAddress(LOCALHOST, DEFAULT_PORT)
        return
    broker = BrokerProcess(default_broker_kind(), tmp_path_factory.mktemp("mqtt-broker"))
    broker.start()
    try:
        yield broker.address
    finally:
        broker.stop()


@pytest.fixture
def private_broker(request: pytest.FixtureRequest) -> Iterator[BrokerProcess]:
    kind = getattr(request, "param", None) or default_broker_kind()
    if kind == "mosquitto" and mosquitto_binary() is None:
        pytest.skip("mosquitto binary not installed (apt-get install mosquitto)")
    workdir = broker_workdir()
    broker = BrokerProcess(kind, workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def mqtt_recorder() -> Iterator[Callable[..., MqttRecorder]]:
    recorders: list[MqttRecorder] = []

    def make(address: BrokerAddress | tuple[str, int], topics: str | Sequence[str]) -> MqttRecorder:
        recorder = MqttRecorder(address, topics).start()
        recorders.append(recorder)
        return recorder

    yield make
    for recorder in recorders:
        recorder.close()


@pytest.fixture
def tcp_gate() -> Iterator[Callable[[BrokerAddress], TcpGate]]:
    gates: list[TcpGate] = []

    def make(target: BrokerAddress) -> TcpGate:
        gate = TcpGate(target)
        gate.open()
        gates.append(gate)
        return gate

    yield make
    for gate in gates:
        gate.close()
