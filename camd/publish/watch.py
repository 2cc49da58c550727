"""`camd events`: follow what a running camd publishes, one readable line per event."""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camd.publish.console import ConsoleSink
from camd.publish.frigate import event_from_payload


def watch_events(host: str, port: int, prefix: str, count: int = 0) -> int:
    """Print events until interrupted, or until `count` events when count > 0."""
    sink = ConsoleSink()
    seen = 0
    done = threading.Event()

    def on_connect(client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            sink.console.print(f"[red]broker refused the connection: {reason}[/]")
            done.set()
            return
        client.subscribe(f"{prefix}/events", qos=1)
        client.subscribe(f"{prefix}/available", qos=1)
        sink.console.print(f"following {prefix}/events on {host}:{port} (Ctrl-C to stop)")

    def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        nonlocal seen
        if message.topic.endswith("/available"):
            sink.console.print(f"camd is {message.payload.decode(errors='replace')}")
            return
        try:
            sink(event_from_payload(json.loads(message.payload)))
        except (ValueError, KeyError, TypeError) as exc:
            sink.console.print(f"[yellow]unreadable event on {message.topic}: {exc}[/]")
            return
        seen += 1
        if count and seen >= count:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        sink.console.print(f"[red]cannot reach the MQTT broker at {host}:{port}: {exc}[/]")
        return 1
    client.loop_start()
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        client.loop_stop()
        client.disconnect()
    return 0
