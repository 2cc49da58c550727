"""MQTT publishing that loses nothing while the broker is away.

Durable messages (events) go through the on-disk Outbox; a sender thread hands them to paho in
order, at most WINDOW un-acknowledged at a time, and deletes each from the outbox only when the
broker's PUBACK arrives. Non-durable retained state (per-camera status and the like) keeps only
its latest value in memory and is re-sent on every (re)connect.

Order across a reconnect: paho keeps QoS 1 messages it was given until their PUBACK and re-sends
them, in order, after the next CONNACK. The sender therefore sends nothing new after a reconnect
until every message that was in flight has been acknowledged: the old ones reach the broker first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import ssl
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from camd.config.schema import MqttConfig
from camd.outage import OutageLog
from camd.publish.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)

# Un-acknowledged messages in flight: enough to hide the round trip, small enough that a
# reconnect re-sends little.
WINDOW = 20
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
AVAILABLE_ONLINE = "online"
AVAILABLE_OFFLINE = "offline"

MessageCallback = Callable[[str, bytes], None]
Payload = str | bytes | dict[str, Any]


def _plain(value: object) -> object:
    """JSON for numpy scalars and arrays (scores and boxes often arrive as numpy types)."""
    convert = getattr(value, "tolist", None)  # numpy: a scalar gives a Python number, an array a list
    if callable(convert):
        return convert()
    raise TypeError(f"MQTT payload value {value!r} of type {type(value).__name__} is not JSON serializable")


def encode_payload(payload: Payload) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    if isinstance(payload, dict):
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=_plain).encode()
    raise TypeError(f"MQTT payload must be str, bytes or dict, got {type(payload).__name__}")


class MqttPublisher:
    """Publishes camd's events and state to one broker. Thread-safe: any thread may publish."""

    def __init__(self, config: MqttConfig, outbox_path: Path) -> None:
        self.config = config
        self.prefix = config.topic_prefix
        self.available_topic = f"{self.prefix}/available"
        self._client = self._make_client()  # first: a config error must not leave the outbox locked
        self.outbox = Outbox(outbox_path, max_items=config.outbox_max_events)
        self.outbox_outage = OutageLog(
            log, f"MQTT outbox: writing to {outbox_path}",
            "events are sent straight to the broker while it answers and lost while it does not",
        )
        self._connected = threading.Event()
        self._connect_generation = 0  # +1 on every CONNACK; the sender watches it to detect reconnects
        self._ever_connected = False
        self._down_logged = False
        self._reconnects = 0
        self._delivered = 0
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()  # mids from on_publish, for the sender
        self._wake = threading.Event()
        self._stopping = threading.Event()  # stop() began: send nothing new
        self._halt = threading.Event()  # the sender thread must return
        self._state_lock = threading.Lock()
        self._retained_state: dict[str, tuple[bytes, int]] = {}  # topic -> (payload, qos)
        self._subscriptions: dict[str, list[MessageCallback]] = {}
        self._inflight: OrderedDict[int, int] = OrderedDict()  # mid -> outbox seq; sender thread only
        self._inflight_empty = threading.Event()
        self._inflight_empty.set()
        self._sender = threading.Thread(target=self._send_loop, name="camd-mqtt-sender", daemon=True)
        self._started = False
        self._stopped = False

    # -- setup -------------------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        cfg = self.config
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            clean_session=True,
            protocol=paho.MQTTv311,
        )
        if cfg.username is not None:
            password = cfg.password.get_secret_value() if cfg.password is not None else None
            client.username_pw_set(cfg.username, password)
        if cfg.tls:
            if cfg.tls_ca is not None and not cfg.tls_ca.is_file():
                raise FileNotFoundError(f"mqtt.tls_ca: CA file {cfg.tls_ca} does not exist")
            client.tls_set(ca_certs=str(cfg.tls_ca) if cfg.tls_ca else None, cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self.available_topic, AVAILABLE_OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.max_inflight_messages_set(WINDOW)
        client.connect_timeout = 5.0
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        """Connect in the background (retrying forever) and start delivering the outbox."""
        if self._started:
            raise RuntimeError("MqttPublisher.start() called twice")
        self._started = True
        queued = len(self.outbox)
        log.info(
            "MQTT: connecting to %s:%d as %r%s%s; %d message(s) waiting in the outbox",
            self.config.host, self.config.port, self.config.client_id,
            f" (user {self.config.username!r})" if self.config.username else "",
            " over TLS" if self.config.tls else "", queued,
        )
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self._client.loop_start()
        self._sender.start()

    # -- public API --------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def topic(self, suffix: str) -> str:
        return f"{self.prefix}/{suffix.strip('/')}"

    def publish_event(self, payload: dict[str, Any]) -> None:
        """Queue a Frigate-shaped event for ``<prefix>/events`` (QoS 1, durable, in order)."""
        self.publish("events", payload, retain=False, qos=1, durable=True)

    def publish(
        self,
        topic_suffix: str,
        payload: Payload,
        retain: bool = False,
        qos: int = 1,
        durable: bool = True,
    ) -> None:
        """Publish to ``<prefix>/<topic_suffix>``.

        durable: written to the outbox and delivered in order even across outages and restarts.
        Not durable and retained: only the latest value is kept (in memory) and re-sent on each
        connect; suits state such as a camera's status. Not durable and not retained: sent only
        if connected right now, otherwise dropped.
        """
        self.publish_topic(self.topic(topic_suffix), payload, retain=retain, qos=qos, durable=durable)

    def publish_topic(
        self,
        topic: str,
        payload: Payload,
        retain: bool = False,
        qos: int = 1,
        durable: bool = True,
    ) -> None:
        """`publish` to a full topic, e.g. Home Assistant's discovery prefix outside camd's own."""
        data = encode_payload(payload)
        if durable:
            try:
                self.outbox.put(topic, data, qos=qos, retain=retain)
            except (sqlite3.Error, OSError) as exc:  # a full disk: better sent now than not at all
                self.outbox_outage.failed(exc)
                if self.connected:
                    self._client.publish(topic, data, qos=qos, retain=retain)
                return
            self.outbox_outage.ok()
            self._wake.set()
            return
        # Under the lock so that a value set while a CONNACK is being handled is sent exactly by one side.
        with self._state_lock:
            if retain:
                self._retained_state[topic] = (data, qos)
            if self.connected:
                self._client.publish(topic, data, qos=qos, retain=retain)

    def subscribe(self, topic: str, callback: MessageCallback) -> None:
        """Call ``callback(topic, payload)`` for messages on ``topic`` (a full topic, wildcards
        allowed). Re-subscribed on every reconnect. The callback runs on paho's network thread:
        keep it short."""

        with self._state_lock:
            callbacks = self._subscriptions.get(topic)
            if callbacks is not None:
                callbacks.append(callback)
                return
            self._subscriptions[topic] = [callback]
            self._client.message_callback_add(topic, self._dispatcher(topic))
            if self.connected:
                self._client.subscribe(topic, qos=1)

    def _dispatcher(self, topic: str) -> Callable[[paho.Client, object, paho.MQTTMessage], None]:
        def dispatch(_client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
            with self._state_lock:
                callbacks = list(self._subscriptions.get(topic, ()))
            for callback in callbacks:
                try:
                    callback(message.topic, message.payload)
                except Exception:
                    log.exception("MQTT: subscriber callback for %r failed", topic)

        return dispatch

    def stats(self) -> dict[str, int]:
        return {
            "queued": len(self.outbox),  # waiting on disk, including those in flight
            "inflight": len(self._inflight),  # handed to the broker, PUBACK not yet received
            "delivered": self._delivered,
            "dropped": self.outbox.dropped,
            "reconnects": self._reconnects,
        }

    def stop(self, timeout: float = 3.0) -> None:
        """Deliver what is queued while the broker answers, say offline, wait for in-flight acks,
        disconnect, close the outbox; all within ``timeout`` s (+ ~1 s). Undelivered messages stay
        on disk for the next start."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout
        # While the broker answers, let the sender deliver what is queued (the `end` events of
        # the last tracks, typically), keeping a second for the rest of the shutdown.
        while self._started and self.connected and len(self.outbox) and time.monotonic() < deadline - 1.0:
            self._wake.set()
            time.sleep(0.02)
        self._stopping.set()  # the sender sends nothing new from here on, but still collects acks
        self._wake.set()
        if self._started:
            if self.connected:
                self._inflight_empty.wait(max(0.0, deadline - time.monotonic()))
            self._halt.set()
            self._wake.set()
            if self.connected:
                info = self._client.publish(self.available_topic, AVAILABLE_OFFLINE, qos=1, retain=True)
                # RuntimeError/ValueError: the connection went meanwhile; the broker sends the last will.
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(max(0.05, deadline - time.monotonic()))
            self._client.disconnect()
            self._sender.join(max(0.1, deadline - time.monotonic()))
            # loop_stop joins paho's thread, which may sit in a blocking connect: bound the wait.
            stopper = threading.Thread(target=self._client.loop_stop, name="camd-mqtt-stop", daemon=True)
            stopper.start()
            stopper.join(max(0.5, deadline + 0.8 - time.monotonic()))
            if stopper.is_alive():
                log.warning("MQTT: network thread did not stop in time; leaving it to exit with the process")
        left = len(self.outbox)
        self.outbox.close()
        log.info("MQTT: stopped; %d delivered this run, %d left in the outbox for the next start",
                 self._delivered, left)

    # -- paho callbacks (network thread) ----------------------------------------------------------

    def _on_connect(self, client: paho.Client, _userdata: object, _flags: object, reason: ReasonCode,
                    _properties: object) -> None:
        if reason.is_failure:
            self._log_down(f"broker refused the connection: {reason}")
            return
        if self._ever_connected:
            self._reconnects += 1
            log.info("MQTT: reconnected to %s:%d", self.config.host, self.config.port)
        else:
            log.info("MQTT: connected to %s:%d", self.config.host, self.config.port)
        self._ever_connected = True
        self._down_logged = False
        client.publish(self.available_topic, AVAILABLE_ONLINE, qos=1, retain=True)
        with self._state_lock:
            for topic, (data, qos) in self._retained_state.items():
                client.publish(topic, data, qos=qos, retain=True)
            for topic in self._subscriptions:
                client.subscribe(topic, qos=1)
            self._connect_generation += 1
            self._connected.set()
        self._wake.set()

    def _on_connect_fail(self, _client: paho.Client, _userdata: object) -> None:
        # paho calls this from inside its `except OSError`: the exception says why (refused, TLS...).
        error = sys.exc_info()[1]
        self._log_down(f"connection failed: {error}" if error else "connection failed")

    def _on_disconnect(self, _client: paho.Client, _userdata: object, _flags: object, reason: ReasonCode,
                       _properties: object) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            self._log_down(f"disconnected ({reason})")

    def _log_down(self, why: str) -> None:
        # Once per outage: paho retries every 1..30 s and each retry would otherwise log.
        if self._stopping.is_set():
            return
        if not self._down_logged:
            self._down_logged = True
            log.warning(
                "MQTT: broker %s:%d unavailable (%s); retrying every %d-%d s, events are kept in the outbox "
                "(%d waiting)", self.config.host, self.config.port, why, RECONNECT_MIN_S, RECONNECT_MAX_S,
                len(self.outbox) if not self.outbox.closed else 0,
            )
        else:
            log.debug("MQTT: still unavailable (%s)", why)

    def _on_publish(self, _client: paho.Client, _userdata: object, mid: int, _reason: ReasonCode,
                    _properties: object) -> None:
        # Never touch the outbox here: paho holds its message lock while calling us.
        self._acks.put(mid)
        self._wake.set()

    # -- sender thread -------------------------------------------------------------------------

    def _send_loop(self) -> None:
        try:
            self._send_until_halted()
        except OutboxError:
            if not self._halt.is_set():
                raise
        except Exception:
            log.exception("MQTT: sender thread failed; events stay in the outbox until the next start")
            raise

    def _send_until_halted(self) -> None:
        last_sent = 0  # highest outbox seq handed to paho
        seen_generation = 0
        draining = False  # after a reconnect: wait for paho's re-sends before sending anything new
        while not self._halt.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            self._collect_acks()
            if self._stopping.is_set() or not self.connected:
                continue
            if self._connect_generation != seen_generation:
                seen_generation = self._connect_generation
                draining = bool(self._inflight)
            if draining:
                if self._inflight:
                    continue
                draining = False
            room = WINDOW - len(self._inflight)
            if room <= 0:
                continue
            for item in self.outbox.peek(room, after=last_sent):
                info = self._client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
                if item.qos == 0:
                    self.outbox.ack(item.seq)  # no PUBACK will come: handing it over is all QoS 0 gets
                    self._delivered += 1
                else:
                    self._inflight[info.mid] = item.seq
                    self._inflight_empty.clear()
                last_sent = item.seq
                if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                    break  # paho keeps it and re-sends it after the next CONNACK
            self._collect_acks()

    def _collect_acks(self) -> None:
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                break
            seq = self._inflight.pop(mid, None)
            if seq is not None:  # other mids are our online/state messages
                if not self.outbox.closed:
                    try:
                        self.outbox.ack(seq)
                    except sqlite3.Error as exc:  # a full disk: it is sent again after a restart
                        self.outbox_outage.failed(exc)
                self._delivered += 1
        if not self._inflight:
            self._inflight_empty.set()
