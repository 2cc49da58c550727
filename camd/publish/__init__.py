"""Getting camd's events and state to Home Assistant: MQTT with a durable outbox."""

from camd.publish.mqtt import MqttPublisher
from camd.publish.outbox import Outbox, OutboxError, OutboxItem

__all__ = ["MqttPublisher", "Outbox", "OutboxError", "OutboxItem"]
