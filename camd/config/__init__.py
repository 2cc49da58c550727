"""Configuration: the pydantic schema (models) and the YAML loader with line-aware errors (loader)."""

from camd.config.models import (
    CameraConfig,
    Config,
    DetectorConfig,
    EventsConfig,
    MqttConfig,
    ObjectFilter,
    ObjectsConfig,
    StoreConfig,
    TrackerConfig,
)

__all__ = [
    "CameraConfig",
    "Config",
    "DetectorConfig",
    "EventsConfig",
    "MqttConfig",
    "ObjectFilter",
    "ObjectsConfig",
    "StoreConfig",
    "TrackerConfig",
]
