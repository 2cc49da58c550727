"""The configuration schema: one YAML file, validated at start.

Every model forbids unknown keys so that a typo is an error that names the field, not a
setting silently ignored. Defaults are what a small home hub should run with.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from camd.types import TRACKED_LABELS

CAMERA_NAME = re.compile(r"^[a-z0-9_]+$")
SOURCE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "file")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ObjectFilter(Strict):
    """Per-label detection filter. Raising min_score cuts false alarms but risks missing
    people in the dark; min_area drops far-away objects too small to identify."""

    min_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    min_area: Annotated[int, Field(ge=0)] = 0  # pixels in the detect frame


def _default_filters() -> dict[str, ObjectFilter]:
    return {
        "person": ObjectFilter(min_score=0.5, min_area=600),
        "car": ObjectFilter(min_score=0.5, min_area=1500),
        "truck": ObjectFilter(min_score=0.5, min_area=1500),
        "bus": ObjectFilter(min_score=0.5, min_area=1500),
        "motorcycle": ObjectFilter(min_score=0.5, min_area=800),
        "bicycle": ObjectFilter(min_score=0.5, min_area=800),
    }


class ObjectsConfig(Strict):
    track: list[str] = Field(default_factory=lambda: sorted(TRACKED_LABELS))
    filters: dict[str, ObjectFilter] = Field(default_factory=_default_filters)

    @field_validator("track")
    @classmethod
    def _known_labels(cls, labels: list[str]) -> list[str]:
        unknown = sorted(set(labels) - TRACKED_LABELS)
        if unknown:
            raise ValueError(f"unknown label(s) {unknown}; camd tracks {sorted(TRACKED_LABELS)}")
        return labels

    @field_validator("filters")
    @classmethod
    def _known_filter_labels(cls, filters: dict[str, ObjectFilter]) -> dict[str, ObjectFilter]:
        unknown = sorted(set(filters) - TRACKED_LABELS)
        if unknown:
            raise ValueError(f"filter for unknown label(s) {unknown}; camd tracks {sorted(TRACKED_LABELS)}")
        return {**_default_filters(), **filters}

    def filter_for(self, label: str) -> ObjectFilter:
        return self.filters.get(label, ObjectFilter())


class CameraConfig(Strict):
    url: SecretStr  # may hold a password: never printed whole (see camd.redact)
    enabled: bool = True
    detect_fps: Annotated[float, Field(gt=0.0, le=30.0)] = 5.0
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    # A file source plays once at its own pace and ends (tests, demo); loop replays it forever.
    loop: bool = False
    realtime: bool = False  # pace a file source at its native rate, as a live camera would
    objects: ObjectsConfig | None = None  # overrides the global objects section for this camera
    reconnect_initial_s: Annotated[float, Field(gt=0.0)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0.0)] = 60.0
    open_timeout_s: Annotated[float, Field(gt=0.0)] = 10.0

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: SecretStr) -> SecretStr:
        raw = url.get_secret_value()
        parts = urlsplit(raw)
        if parts.scheme == "" and raw.strip():
            return url  # a plain file path
        if parts.scheme not in SOURCE_SCHEMES:
            raise ValueError(f"unsupported URL scheme {parts.scheme!r}; use one of {SOURCE_SCHEMES}")
        if parts.scheme != "file" and not parts.hostname:
            raise ValueError("URL has no host (expected e.g. rtsp://user:pass@192.168.1.10:554/stream1)")
        try:
            parts.port  # noqa: B018  (raises on a non-numeric port)
        except ValueError as exc:
            raise ValueError(f"bad port in URL: {exc}") from None
        return url

    @model_validator(mode="after")
    def _backoff_order(self) -> CameraConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self


class MqttConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    tls_ca: Path | None = None
    client_id: str = "camd"
    topic_prefix: str = "camd"
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    # Events wait in an on-disk outbox until the broker acknowledges them (QoS 1).
    outbox_max_events: Annotated[int, Field(ge=10)] = 100_000

    @field_validator("topic_prefix")
    @classmethod
    def _topic(cls, prefix: str) -> str:
        if not prefix or any(c in prefix for c in "#+") or prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError("topic_prefix must be a plain MQTT topic like 'camd' (no wildcards or edge '/')")
        return prefix


class DetectorConfig(Strict):
    """backend 'ssd' is the COCO SSD MobileNetV2 (fast, the default); 'yolo' runs any
    YOLOv8/YOLO11-style ONNX export (more accurate, ~2x slower on a small CPU)."""

    backend: Literal["ssd", "yolo"] = "ssd"
    model: str | None = None  # a model id from models/manifest.yaml or a file path; None: backend default
    # For YOLO exports trained on other classes, map class index -> camd label.
    class_map: dict[int, str] | None = None
    input_size: Annotated[int, Field(ge=64, le=2048)] | None = None
    threads: Annotated[int, Field(ge=1, le=64)] = 2
    nms_iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.45

    @field_validator("class_map")
    @classmethod
    def _mapped_labels(cls, class_map: dict[int, str] | None) -> dict[int, str] | None:
        if class_map:
            unknown = sorted(set(class_map.values()) - TRACKED_LABELS)
            if unknown:
                raise ValueError(f"class_map names unknown label(s) {unknown}")
        return class_map


class TrackerConfig(Strict):
    """ByteTrack. lost_track_s keeps a track through missed detections: longer survives
    occlusions but may hand an id to the next person walking the same path."""

    lost_track_s: Annotated[float, Field(gt=0.0)] = 2.0
    min_hits: Annotated[int, Field(ge=1)] = 2
    match_iou: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1


class EventsConfig(Strict):
    update_interval_s: Annotated[float, Field(ge=0.0)] = 5.0  # at most one update per track per interval
    min_track_frames: Annotated[int, Field(ge=1)] = 2  # frames before a track is announced as 'new'


class StoreConfig(Strict):
    """Qdrant: an embedded local path by default, a server when url is set."""

    path: Path | None = None  # default: <state_dir>/qdrant
    url: str | None = None
    api_key: SecretStr | None = None


class Config(Strict):
    state_dir: Path = Path("var")
    models_dir: Path | None = None  # default: <state_dir>/models
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    objects: ObjectsConfig = Field(default_factory=ObjectsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    cameras: dict[str, CameraConfig]

    @field_validator("cameras")
    @classmethod
    def _camera_names(cls, cameras: dict[str, CameraConfig]) -> dict[str, CameraConfig]:
        if not cameras:
            raise ValueError("at least one camera is required")
        bad = [name for name in cameras if not CAMERA_NAME.match(name)]
        if bad:
            raise ValueError(f"camera names must be lowercase letters, digits and '_' (MQTT topics): {bad}")
        return cameras

    def objects_for(self, camera: str) -> ObjectsConfig:
        return self.cameras[camera].objects or self.objects

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.state_dir / "models"

    @property
    def store_path(self) -> Path:
        return self.store.path or self.state_dir / "qdrant"

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.sqlite3"
