"""Configuration: the pydantic schema (schema) and the YAML loader with line-aware errors (loader)."""

from camd.config.loader import ConfigError, ConfigIssue, check_config_main, describe, load_config
from camd.config.schema import (
    CameraConfig,
    Config,
    DetectorConfig,
    EventsConfig,
    MotionConfig,
    MqttConfig,
    ObjectFilter,
    ObjectsConfig,
    StoreConfig,
    TrackerConfig,
)

__all__ = [
    "CameraConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "DetectorConfig",
    "EventsConfig",
    "MotionConfig",
    "MqttConfig",
    "ObjectFilter",
    "ObjectsConfig",
    "StoreConfig",
    "TrackerConfig",
    "check_config_main",
    "describe",
    "load_config",
]
