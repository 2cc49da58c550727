"""The configuration schema: one YAML file, validated at start.

Every model forbids unknown keys so that a typo is an error that names the field, not a
setting silently ignored. Defaults are what a small home hub should run with.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from camd.types import TRACKED_LABELS

CAMERA_NAME = re.compile(r"^[a-z0-9_]+$")
SOURCE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "file")
# "192.168.1.10:554/stream1": a camera address written without its scheme.
HOST_PORT_WITHOUT_SCHEME = re.compile(r"^[\w.-]+:\d+(/|$)")


def _camera_name(name: str) -> str:
    if not CAMERA_NAME.match(name):
        raise ValueError(f"camera name {name!r}: use lowercase letters, digits and '_' (it is an MQTT topic)")
    return name


CameraName = Annotated[str, AfterValidator(_camera_name)]


def plain_topic(topic: str, field: str, example: str) -> str:
    """A topic prefix camd publishes under: no wildcards, no leading or trailing '/'."""
    if not topic or any(c in topic for c in "#+") or topic.startswith("/") or topic.endswith("/"):
        raise ValueError(f"{field} must be a plain MQTT topic like '{example}' (no wildcards or edge '/')")
    return topic


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
        # A label's unset fields keep that label's default (person: {min_score: 0.7} keeps min_area 600).
        merged = _default_filters()
        for label, given in filters.items():
            base = merged.get(label, ObjectFilter())
            merged[label] = base.model_copy(update=given.model_dump(exclude_unset=True))
        return merged

    def filter_for(self, label: str) -> ObjectFilter:
        return self.filters.get(label, ObjectFilter())


class MotionConfig(Strict):
    """The motion gate in front of the detector. Lower threshold/min_area wake the detector for
    smaller movements (fewer missed people far away) at the cost of CPU on swaying trees and rain."""

    enabled: bool = True
    threshold: Annotated[float, Field(gt=0.0, lt=255.0)] = 20.0  # grey-level change that counts
    min_area: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.002  # fraction of the frame that must change
    frame_width: Annotated[int, Field(ge=32, le=1280)] = 160  # the small copy motion is measured on
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.05  # how fast the background adapts
    refresh_s: Annotated[float, Field(gt=0.0)] = 5.0  # detect at least this often with no motion
    # ... and this often while tracks are open but nothing moves on them (a parked car, someone
    # standing): below tracker.lost_track_s so a still object keeps its track. 1.5, not 0.6: a home
    # camera with a parked car detected 40% less often, same tracks (docs/performance.md, session 12).
    track_refresh_s: Annotated[float, Field(gt=0.0)] = 1.5
    # ... and this often while a tracked object moves (0: every sampled frame). Between detections
    # `follow` moves the boxes along the picture; on vtest 0.4 s keeps ~90-96% of the tracks of
    # detecting every frame with the detector on about half of the frames (docs/performance.md).
    moving_refresh_s: Annotated[float, Field(ge=0.0)] = 0.4
    # Between detections, move the last detections' boxes along the picture's optical flow (~1-2 ms
    # a frame) so the tracker keeps walkers it sees only every few frames (camd/vision/flow.py).
    follow: bool = True


class CameraConfig(Strict):
    url: SecretStr  # may hold a password: never printed whole (see camd.redact)
    # The camera's low-resolution substream (Frigate's "detect" role). When set, detection and
    # tracking run on it and `url` (the main stream) is decoded only when identity needs a crop.
    detect_url: SecretStr | None = None
    enabled: bool = True
    detect_fps: Annotated[float, Field(gt=0.0, le=30.0)] = 5.0
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    # A file source plays once at its own pace and ends (tests, demo); loop replays it forever.
    loop: bool = False
    realtime: bool = False  # pace a file source at its native rate, as a live camera would
    objects: ObjectsConfig | None = None  # overrides the global objects section for this camera
    motion: MotionConfig = Field(default_factory=MotionConfig)
    reconnect_initial_s: Annotated[float, Field(gt=0.0)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0.0)] = 60.0
    open_timeout_s: Annotated[float, Field(gt=0.0)] = 10.0

    @field_validator("url", "detect_url")
    @classmethod
    def _valid_url(cls, url: SecretStr | None) -> SecretStr | None:
        # Messages here never quote the URL: it may hold a password.
        if url is None:
            return None
        raw = url.get_secret_value()
        if not raw.strip():
            raise ValueError("url must not be empty")
        if HOST_PORT_WITHOUT_SCHEME.match(raw):
            raise ValueError("url looks like a network address without a scheme: write rtsp://HOST:PORT/PATH")
        try:
            parts = urlsplit(raw)
        except ValueError:
            raise ValueError("url is not a valid URL") from None
        if parts.scheme == "":
            return url  # a plain file path
        if parts.scheme not in SOURCE_SCHEMES:
            raise ValueError(f"unsupported URL scheme {parts.scheme!r}; use one of {SOURCE_SCHEMES}")
        if parts.scheme != "file":
            if not parts.hostname:
                raise ValueError("URL has no host (expected e.g. rtsp://user:pass@192.168.1.10:554/stream1)")
            if "@" in parts.path + parts.query + parts.fragment:  # the '@' of user:pass@ came after a '/?#'
                raise ValueError("URL credentials contain '/', '?' or '#': percent-encode them ('/' is %2F)")
        try:
            parts.port  # noqa: B018  (raises on a non-numeric or out-of-range port)
        except ValueError:
            raise ValueError("bad port in URL (expected a number from 1 to 65535)") from None
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

    @field_validator("host")
    @classmethod
    def _plain_host(cls, host: str) -> str:
        if not host.strip():
            raise ValueError("host must not be empty (the broker's name or IP address, e.g. 192.168.1.2)")
        if "://" in host or host.count(":") == 1:
            raise ValueError("host is a bare name or IP: no scheme and no ':port' (set port and tls instead)")
        return host

    @field_validator("tls_ca")
    @classmethod
    def _ca_exists(cls, tls_ca: Path | None) -> Path | None:
        if tls_ca is not None and not tls_ca.is_file():
            raise ValueError(f"tls_ca file not found: {tls_ca}")
        return tls_ca

    @model_validator(mode="after")
    def _coherent_auth(self) -> MqttConfig:
        if self.tls_ca is not None and not self.tls:
            raise ValueError("tls_ca is set but tls is false: set tls: true to use it")
        if self.password is not None and not self.username:
            raise ValueError("password is set without a username")
        return self

    @field_validator("topic_prefix")
    @classmethod
    def _topic(cls, prefix: str) -> str:
        return plain_topic(prefix, "topic_prefix", "camd")


DISCOVERY_NODE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


class HomeAssistantConfig(Strict):
    """Home Assistant MQTT discovery: camd's cameras and enrolled people appear as devices."""

    enabled: bool = True
    discovery_prefix: str = "homeassistant"
    # Home Assistant 2024.11+: one `<prefix>/device/<id>/config` message per device (with `cmps`)
    # instead of one message per entity. Older Home Assistant ignores it: leave false for those.
    device_discovery: bool = False
    node_id: str = "camd"  # the <node_id> in discovery topics and the start of every unique_id
    # Seconds an occupancy sensor stays on after the last object left: rides out a missed detection.
    occupancy_off_delay_s: Annotated[float, Field(ge=0.0, le=3600.0)] = 30.0
    # Seconds without a sighting before a person's presence turns from home to not_home.
    presence_away_s: Annotated[float, Field(gt=0.0)] = 900.0

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        return plain_topic(prefix, "discovery_prefix", "homeassistant")

    @field_validator("node_id")
    @classmethod
    def _node(cls, node_id: str) -> str:
        if not DISCOVERY_NODE_ID.match(node_id):
            raise ValueError("node_id: use letters, digits, '_' and '-' only (it is a discovery topic level)")
        return node_id


class FarConfig(Strict):
    """The far-people pass. enabled: look again, at native resolution, at moving regions the first
    pass explained with no detection (people too small for the 300x300 SSD). min_height: frames
    smaller than this gain nothing (the first pass already sees them near native size). tile: the
    square crop (frame pixels) each region is looked at in; max_tiles bounds the cost per frame (tiles
    go where each covers the most unexplained regions or lost small tracks). motion_width: the pass
    measures motion itself this finely (a walker under ~50 px makes no moving region on the gate's
    160 px copy), on frames at least min_height tall, for its tiles only: the gate's own
    motion.frame_width and min_area, i.e. what wakes the detector, are unchanged (0: use the gate's
    regions). track_height: an open track whose predicted box is at most this share of the frame's
    height and which the first pass did not find again gets a tile there, so a far person found once
    is looked for where he should be (0: off). wake_every_s: on those frames, a region of the pass's own
    motion that no open track's box explains wakes the detector (first pass and tiles), at most this
    often, so a lone far walker the gate's coarser motion does not see is found within about a second
    rather than at its 5-s refresh (a windy scene pays at most one such detection this often; 0: off,
    only the gate wakes it). docs/performance.md has the figures."""

    enabled: bool = True
    min_height: Annotated[int, Field(ge=0)] = 480
    tile: Annotated[int, Field(ge=96, le=1024)] = 320
    max_tiles: Annotated[int, Field(ge=1, le=16)] = 2
    motion_width: Annotated[int, Field(ge=0, le=1280)] = 320
    track_height: Annotated[float, Field(ge=0.0, le=1.0)] = 0.125
    wake_every_s: Annotated[float, Field(ge=0.0)] = 1.0


class DetectorConfig(Strict):
    """backend 'ssd' is the COCO SSD MobileNetV2 (fast, the default); 'yolo' runs any
    YOLOv8/YOLO11-style ONNX export (more accurate, several times slower on a small CPU).

    runtime: what runs the model. 'openvino' (the default, both backends) is the fastest here;
    'opencv' runs the SSD's whole TensorFlow graph through OpenCV DNN (needs opencv-python < 5.1);
    'onnxruntime' runs a YOLO ONNX export. precision (OpenVINO only): 'auto' runs the SSD in bf16 where the
    CPU computes bf16 natively (no further from the fp32 reference than a lossless re-encode of the
    footage, 4.2x OpenCV here) and in f32 elsewhere (the reference's scores, 2.3x); 'int8' (the SSD
    quantized once at `camd models prepare`: 6.3x, scores ~0.013 lower and noisier, docs/performance.md),
    'f32' and 'bf16' force one."""

    backend: Literal["ssd", "yolo"] = "ssd"
    runtime: Literal["openvino", "opencv", "onnxruntime"] = "openvino"
    precision: Literal["auto", "int8", "f32", "bf16"] = "auto"
    model: str | None = None  # a model id from models/manifest.yaml or a file path; None: backend default
    # For YOLO exports trained on other classes, map class index -> camd label.
    class_map: dict[int, str] | None = None
    input_size: Annotated[int, Field(ge=64, le=2048)] | None = None
    threads: Annotated[int, Field(ge=1, le=64)] = 2
    nms_iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.45
    # The inference pool all cameras share. workers: threads, each with its own copy of the model
    # (more only helps with cores to spare: each call already uses `threads`). batch: frames
    # (of any cameras) per inference call. queue_frames: frames of one camera waiting for the
    # detector; under overload the oldest are dropped (and counted), so latency and memory stay bounded.
    workers: Annotated[int, Field(ge=1, le=16)] = 1
    batch: Annotated[int, Field(ge=1, le=16)] = 1
    queue_frames: Annotated[int, Field(ge=2, le=100)] = 3

    # The far-people pass (camd/vision/far.py): moving regions the first pass left unexplained are
    # looked at again at native resolution, on frames at least far_min_height pixels tall.
    far: FarConfig = Field(default_factory=FarConfig)

    @model_validator(mode="after")
    def _runtime_fits_backend(self) -> DetectorConfig:
        if self.backend == "ssd" and self.runtime == "onnxruntime":
            raise ValueError("runtime onnxruntime runs YOLO ONNX exports; for the SSD use openvino or opencv")
        if self.backend == "yolo" and self.runtime == "opencv":
            raise ValueError("runtime opencv runs the SSD graph; for YOLO use openvino or onnxruntime")
        if self.runtime != "openvino" and self.precision != "auto":
            raise ValueError(f"precision is an OpenVINO setting; runtime {self.runtime} runs the model as is")
        if self.backend == "yolo" and self.precision == "int8":
            raise ValueError("int8 is prepared for the SSD only; YOLO runs f32 or bf16")
        return self

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
    occlusions but may hand an id to the next person walking the same path. scene_cut: the content
    score (PySceneDetect's, mean HSV change 0-255 between detected frames) at which the picture is a
    new shot and every open track ends (camd/vision/scenecut.py); 0 turns it off."""

    lost_track_s: Annotated[float, Field(gt=0.0)] = 2.0
    min_hits: Annotated[int, Field(ge=1)] = 2
    match_iou: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    scene_cut: Annotated[float, Field(ge=0.0, le=255.0)] = 45.0


class EventsConfig(Strict):
    update_interval_s: Annotated[float, Field(ge=0.0)] = 2.0  # at most one update per track per interval
    min_track_frames: Annotated[int, Field(ge=1)] = 2  # frames before a track is announced as 'new'


class StoreConfig(Strict):
    """Qdrant: an embedded local path by default, a server when url is set."""

    path: Path | None = None  # default: <state_dir>/qdrant
    url: str | None = None
    api_key: SecretStr | None = None

    @model_validator(mode="after")
    def _one_location(self) -> StoreConfig:
        if self.path is not None and self.url:
            raise ValueError("set either path (embedded store) or url (Qdrant server), not both")
        if self.url and urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError("url must start with http:// or https:// (e.g. http://192.168.1.20:6333)")
        if self.url and "@" in urlsplit(self.url).netloc:  # url is a plain str: it must not hold a secret
            raise ValueError("url must not contain credentials: put the Qdrant API key in api_key")
        return self


class ServiceConfig(Strict):
    """Running under systemd. The watchdog is fed only while frames are processed: a pipeline
    that stalls with cameras online for stall_s stops feeding it and systemd restarts camd.
    Shorter recovers sooner; too short restarts a hub that is only briefly overloaded."""

    stall_s: Annotated[float, Field(gt=0.0, le=3600.0)] = 60.0


class ApiConfig(Strict):
    """The local control API (health, metrics, people). State-changing calls need the token
    camd writes to <state_dir>/api-token at first start."""

    enabled: bool = True
    host: str = "127.0.0.1"  # loopback only by default: the API is for this machine
    port: Annotated[int, Field(ge=1, le=65535)] = 8765
    socket: Path | None = None  # a Unix socket instead of host:port; relative: under state_dir

    @field_validator("host")
    @classmethod
    def _plain_api_host(cls, host: str) -> str:
        if not host.strip() or "://" in host or "/" in host:
            raise ValueError("host is an address or name to listen on, e.g. 127.0.0.1 (no scheme, no path)")
        return host


OSNET_VARIANTS = (
    "osnet_x1_0", "osnet_x0_75", "osnet_x0_5", "osnet_x0_25", "osnet_ibn_x1_0",
    "osnet_ain_x1_0", "osnet_ain_x0_75", "osnet_ain_x0_5", "osnet_ain_x0_25",
)  # fmt: skip
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


# The OSNet weights camd uses when the config names none (models/manifest.yaml, asset osnet_x0_25_msmt17).
SHIPPED_OSNET_VARIANT = "osnet_x0_25"


class OSNetConfig(Strict):
    """The torchreid OSNet weights of the body embedding (identity.body_model: osnet). With none of
    weights_url / weights_path given, camd uses its default (torchreid's osnet_x0_25 trained on MSMT17,
    fetched by `camd models prepare` with its checksum; models/manifest.yaml)."""

    variant: Literal[OSNET_VARIANTS] = SHIPPED_OSNET_VARIANT  # type: ignore[valid-type]
    weights_url: str | None = None  # your own weights: downloaded once by `camd models prepare`
    weights_path: Path | None = None  # your own weights already on this machine, instead of weights_url
    sha256: str | None = None  # of your weights file: required with them, checked before use

    @property
    def shipped(self) -> bool:
        """True when camd's own default weights are meant (no weights of the user's named)."""
        return self.weights_url is None and self.weights_path is None

    @field_validator("weights_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and urlsplit(url).scheme not in ("https", "http"):
            raise ValueError("weights_url must start with https:// (or http:// on your own network)")
        return url

    @field_validator("weights_path")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_absolute():
            raise ValueError(
                "weights_path must be an absolute path (e.g. /var/lib/camd/osnet_x1_0_msmt17.pth)"
            )
        return path

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, digest: str | None) -> str | None:
        if digest is None:
            return None
        digest = digest.strip().lower()
        if not SHA256_HEX.match(digest):
            raise ValueError("sha256 must be 64 hex digits (the output of `sha256sum FILE`)")
        return digest


RETIRED_BODY_KEYS = frozenset({
    "body_threshold", "body_threshold_centred", "stranger_body_threshold", "stranger_body_margin",
    "stranger_body_threshold_centred", "stranger_body_margin_centred",
})  # fmt: skip


class IdentityConfig(Strict):
    """Who each track is (docs/identity.md has the measurements behind every default)."""

    enabled: bool = True
    face: bool = True  # dlib face embedding when the head region is large enough (~120 ms a face)
    body: bool = True  # body appearance + clothing colour of the best crops (~5 ms a crop)
    # The body appearance backbone: OSNet, a person re-ID network (camd's default weights, or yours), or
    # the ImageNet MobileNetV2 that ships in a registry package (also the fallback when OSNet's weights
    # cannot be had: camd says so at start, in /health and in `camd eval`).
    body_model: Literal["mobilenetv2", "osnet"] = "osnet"
    osnet: OSNetConfig = Field(default_factory=OSNetConfig)
    gait: bool = True  # MoveNet pose per frame for body shape (~5 ms a person a frame); supporting only
    vehicle: bool = True  # vehicle appearance (known_vehicle / unknown_vehicle)
    # CPU threads each identity model (body, pose, vehicle) may use per call. One spends less CPU for the
    # same vectors (identity -13% on a crowded clip, under the detector's share) and leaves the other core
    # to the detector; hub capacity measured the same with 1 or 2 (docs/performance.md, session 9).
    threads: Annotated[int, Field(ge=1, le=16)] = 1
    # A face closer than this (Euclidean, dlib 128-d) decides; lower is stricter.
    face_distance: Annotated[float, Field(gt=0.0, lt=2.0)] = 0.55
    # Body appearance thresholds are measured per body model, per pair of cameras (the same one, two
    # different ones, an IR night image) and per mode (raw on a new install, centred on each camera's
    # own crowd later): camd/identity/calibrations.py, docs/identity.md. This shifts all of them: +0.05
    # names fewer people from behind and takes fewer strangers for someone; -0.05 the reverse.
    body_strictness: Annotated[float, Field(ge=-0.3, le=0.3)] = 0.0
    vehicle_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.80
    # Linking a track to a stranger (unknown-N / vehicle-N) is stricter than naming an enrolled person: a
    # wrong merge mixes two strangers' histories. The best stranger must pass the body model's link
    # threshold and beat the runner-up stranger by its margin, from a track of at least
    # stranger_min_crops embedded crops (a face match links without them).
    stranger_vehicle_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    stranger_vehicle_margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.03
    stranger_min_crops: Annotated[int, Field(ge=1, le=20)] = 3
    best_crops: Annotated[int, Field(ge=1, le=20)] = 5  # crops per track that are embedded and kept
    retention_days: Annotated[float, Field(gt=0.0)] = 30.0  # strangers' sightings and crops
    same_day_hours: Annotated[float, Field(gt=0.0, le=72.0)] = 12.0  # life of a same-day prototype
    # Strangers remembered at once (their record and the faces and looks that link them). Each costs
    # ~6 KB of RAM (record and look, identity/strangers.py); beyond the cap the least recently seen are
    # forgotten first (their sightings stay in the log until retention_days). Checked hourly and
    # whenever a tenth of the cap has been added since.
    max_strangers: Annotated[int, Field(ge=10)] = 2000
    learn_confidence: Annotated[float, Field(ge=0.5, le=1.0)] = 0.9  # confidence that adds one
    save_crops: bool = True  # a small JPEG per sighting in crops_dir (owner-only)
    # Where the crops go; None: <state_dir>/crops. A full disk there costs crops, never sightings.
    crops_dir: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _retired_thresholds(cls, values: Any) -> Any:
        retired = sorted(set(values) & RETIRED_BODY_KEYS) if isinstance(values, dict) else []
        if retired:
            raise ValueError(
                f"identity.{retired[0]} is gone: body thresholds are now measured per body model and per "
                "camera pair (docs/identity.md); remove it, and use identity.body_strictness (e.g. 0.05 "
                "for stricter) to shift them all"
            )
        return values

    @model_validator(mode="after")
    def _osnet_weights_given(self) -> IdentityConfig:
        if self.body_model != "osnet":
            return self
        osnet = self.osnet
        if osnet.weights_url is not None and osnet.weights_path is not None:
            raise ValueError(
                "give one of identity.osnet.weights_url or identity.osnet.weights_path, not both"
            )
        if osnet.shipped:
            if osnet.variant != SHIPPED_OSNET_VARIANT or osnet.sha256 is not None:
                raise ValueError(
                    f"identity.osnet: camd's own weights are {SHIPPED_OSNET_VARIANT}; for variant "
                    f"{osnet.variant} (or another checksum) give weights_url or weights_path and sha256"
                )
            return self
        if osnet.sha256 is None:
            raise ValueError(
                "your own OSNet weights need identity.osnet.sha256, the file's checksum (`sha256sum FILE`)"
            )
        return self

    @model_validator(mode="after")
    def _min_crops_reachable(self) -> IdentityConfig:
        if self.stranger_min_crops > self.best_crops:
            raise ValueError(
                f"stranger_min_crops ({self.stranger_min_crops}) is more than best_crops "
                f"({self.best_crops}): a track keeps at most best_crops crops, so no stranger would ever "
                "be re-linked by their look"
            )
        return self


class HistoryConfig(Strict):
    """Visits and the daily digest (camd/history): what camd makes of its sightings."""

    # Sightings of one identity on any camera no further apart than this are one visit; longer
    # joins a stroll round the garden into one visit but also two trips to the shop.
    visit_gap_s: Annotated[float, Field(ge=0.0, le=86400.0)] = 600.0
    # Publish the day's digest (retained, <prefix>/digest) when a visit ends, at most this often.
    digest_every_s: Annotated[float, Field(ge=1.0)] = 60.0
class AdaptConfig(Strict):
    """`camd adapt`: fine-tune the body network on this installation's own tracks (docs/adaptation.md)."""

    # Run it every night at this local time ("HH:MM"), from the daemon, as a niced child process; null: only
    # when you run `camd adapt`. A network that passed the guardrail is used from the daemon's next start.
    nightly_at: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] | None = None
    days: Annotated[float, Field(gt=0.0, le=365.0)] = 14.0  # tracks of the last days it learns from
    min_tracks: Annotated[int, Field(ge=4)] = 20  # fewer person tracks with kept crops: nothing to learn
    epochs: Annotated[float, Field(gt=0.0, le=50.0)] = 4.0  # passes over the tracks
    max_minutes: Annotated[float, Field(gt=0.0, le=600.0)] = 30.0  # time bound of the training
    threads: Annotated[int, Field(ge=1, le=64)] = 1  # CPU threads it may use (the cameras keep the rest)
    nice: Annotated[int, Field(ge=0, le=19)] = 19  # its CPU priority below the daemon's
    # The guardrail: the adapted network replaces the one in use only when its score on held-out tracks
    # (mAP, docs/adaptation.md) is higher by this much.
    margin: Annotated[float, Field(ge=0.0, le=0.5)] = 0.02


class Config(Strict):
    state_dir: Path = Path("var")
    models_dir: Path | None = None  # default: <state_dir>/models
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    objects: ObjectsConfig = Field(default_factory=ObjectsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    adapt: AdaptConfig = Field(default_factory=AdaptConfig)
    # Names are checked as keys, so every bad name is reported with the rest, at its own line.
    cameras: dict[CameraName, CameraConfig]

    @field_validator("cameras")
    @classmethod
    def _some_camera(cls, cameras: dict[str, CameraConfig]) -> dict[str, CameraConfig]:
        if not cameras:
            raise ValueError("at least one camera is required")
        return cameras

    def objects_for(self, camera: str) -> ObjectsConfig:
        """The camera's objects section; a key it does not set (track or filters) comes from the
        global section, so a camera that only narrows `track` keeps the global filters."""
        override = self.cameras[camera].objects
        if override is None:
            return self.objects
        given = override.model_fields_set
        return ObjectsConfig(
            track=override.track if "track" in given else self.objects.track,
            filters=override.filters if "filters" in given else self.objects.filters,
        )

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.state_dir / "models"

    @property
    def store_path(self) -> Path:
        return self.store.path or self.state_dir / "qdrant"

    @property
    def sightings_path(self) -> Path:
        """The sighting log (identity/sightings.py), beside the embedded store; with a Qdrant server it
        stays on this machine, in state_dir."""
        if self.store.path is not None:
            return self.store.path.with_name(f"{self.store.path.name}-sightings.sqlite3")
        return self.state_dir / "sightings.sqlite3"

    @property
    def crops_path(self) -> Path:
        return self.identity.crops_dir or self.state_dir / "crops"

    @property
    def adapted_path(self) -> Path:
        """This installation's adapted body networks (`camd adapt`, camd/adapt/store.py)."""
        return self.state_dir / "adapted"

    @property
    def switches_path(self) -> Path:
        return self.state_dir / "switches.json"

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.sqlite3"
