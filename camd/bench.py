"""`camd bench SOURCE`: how fast each stage runs on one real clip, all measured in one run.

(a) decode-only frames/s: every frame decoded and converted to BGR, the ceiling no pipeline beats;
    also as sampled frames/s at the detect rate (the same units as the pipeline's figure).
(b) detector-only ms per frame (p50/p95) on the clip's sampled frames, one call per frame and in
    batches of 4; the detector limit is 1000 / p50 frames/s.
(c) the full pipeline (decode, motion gate, shared inference pool, tracker, events, identity) as
    fast as the machine allows: frames/s and its ratio to the lower of (a) and the detector limit.
(d) the same pipeline with the motion gate off (the naive detect-every-sampled-frame baseline):
    the gate's speed-up and its track recall against the naive run (below).
(e) latency from a frame's arrival to its event on MQTT, p50/p95: the daemon plays the clip in
    real time, as a camera would, and a real MQTT subscriber stamps each new/update event.
(f) peak RSS of the process through (a)-(d): one camera's whole pipeline with its models.
(g) bytes stored (identity memory, crops, outbox) per hour of video, against the video's own bytes.

Track recall (no ground truth ships): the naive run is the reference. A naive track lasting at
least RECALL_MIN_TRACK_S is recalled when one gated track overlaps it (IoU >= 0.5) on at least
half of its frames; between detections the gated pipeline's boxes are where the optical flow
carried them (motion.follow), or else where it predicts its tracks to be.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import av

from camd.config import CameraConfig, Config, DetectorConfig, MqttConfig
from camd.config.schema import ApiConfig, HomeAssistantConfig
from camd.demo import broker_answers, default_footage
from camd.geometry import iou
from camd.pipeline import CameraPipeline
from camd.publish.frigate import event_from_payload
from camd.types import Box, EventKind, Frame, TrackEvent
from camd.vision.detector import Detector, detect_batch
from camd.vision.offline import clip_frames
from camd.vision.pool import InferencePool

log = logging.getLogger(__name__)

RECALL_MIN_TRACK_S = 1.0
RECALL_IOU = 0.5
DETECTOR_SAMPLE_FRAMES = 40
BATCH_PROBE = 4
# Targets of the speed issue: checked and reported here, never as timed tests.
TARGETS = {"pipeline_ratio": 0.8, "gate_speedup": 3.0, "latency_p95_s": 1.0, "stored_fraction": 0.001}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def least_squares_slope(points: list[tuple[float, float]]) -> float:
    """Slope of the least-squares line through (x, y) points; 0 with fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x, mean_y = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def rss_mb() -> float:
    """The process's resident memory now (VmRSS), for samples over time."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # a file removed while walking (sqlite journals)
                total += os.path.getsize(os.path.join(root, name))
    return total


# -- (a) decode ------------------------------------------------------------------------------------


def decode_only(source: str) -> dict[str, float]:
    """Decode and convert every frame, as fast as the CPU allows."""
    started = time.perf_counter()
    frames = 0
    with av.open(source) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        native_fps = float(stream.average_rate or 0) or 25.0
        for frame in container.decode(stream):
            frame.to_ndarray(format="bgr24")
            frames += 1
    elapsed = time.perf_counter() - started
    return {"frames": frames, "seconds": elapsed, "fps": frames / elapsed, "native_fps": native_fps}


# -- (b) detector ----------------------------------------------------------------------------------


def sampled_frames(source: str, detect_fps: float, limit: int) -> list[Frame]:
    """The first `limit` frames the daemon's decoder samples from the source at detect_fps."""
    return list(clip_frames(source, detect_fps, max_frames=limit))


def detector_only(detector: Detector, frames: list[Frame]) -> dict[str, float | None]:
    """ms per frame, one call each (p50/p95), and per frame in batches of BATCH_PROBE."""
    images = [frame.image for frame in frames]
    if not images:
        return {"p50": None, "p95": None, "batch_ms_per_frame": None}
    detector.detect(images[0])  # warm-up: the first call allocates
    single = []
    for image in images:
        started = time.perf_counter()
        detector.detect(image)
        single.append((time.perf_counter() - started) * 1000.0)
    batched_ms = 0.0
    for start in range(0, len(images), BATCH_PROBE):
        chunk = images[start:start + BATCH_PROBE]
        started = time.perf_counter()
        detect_batch(detector, chunk)
        batched_ms += (time.perf_counter() - started) * 1000.0
    return {
        "p50": statistics.median(single),
        "p95": percentile(single, 0.95),
        "batch_ms_per_frame": batched_ms / len(images),
    }


# Side by side: every runtime of the configured backend on the same frames, interleaved frame by
# frame so a neighbour's load hits them alike. The OpenCV DNN runtime is the SSD's reference.
SIDE_BY_SIDE: dict[str, dict[str, DetectorConfig]] = {
    "ssd": {
        "opencv": DetectorConfig(runtime="opencv"),
        "openvino_f32": DetectorConfig(precision="f32"),
        "openvino_bf16": DetectorConfig(precision="bf16"),
        "openvino_int8": DetectorConfig(precision="int8"),
    },
    "yolo": {
        "onnxruntime": DetectorConfig(backend="yolo", runtime="onnxruntime"),
        "openvino_f32": DetectorConfig(backend="yolo", precision="f32"),
    },
}


def variant_name(config: DetectorConfig) -> str:
    """The SIDE_BY_SIDE name of the configured detector."""
    from camd.vision.detector import precision_of

    return config.runtime if config.runtime != "openvino" else f"openvino_{precision_of(config)}"


def detectors_side_by_side(
    config: DetectorConfig, models_dir: Path, frames: list[Frame], rounds: int = 2
) -> dict[str, Any]:
    """ms per frame (p50/p95) of each runtime; a runtime that cannot load here is reported, not fatal."""
    from camd.vision.detector import DetectorError, create_detector

    detectors: dict[str, Detector] = {}
    notes: dict[str, str] = {}
    for name, variant in SIDE_BY_SIDE[config.backend].items():
        try:
            threads = variant.model_copy(update={"threads": config.threads})
            detectors[name] = create_detector(threads, models_dir)
        except DetectorError as exc:
            notes[name] = str(exc)
    images = [frame.image for frame in frames]
    samples: dict[str, list[float]] = {name: [] for name in detectors}
    for detector in detectors.values():
        detector.detect(images[0])  # warm-up
    for _ in range(rounds):
        for image in images:
            for name, detector in detectors.items():
                started = time.perf_counter()
                detector.detect(image)
                samples[name].append((time.perf_counter() - started) * 1000.0)
    ms = {
        name: {"p50": round(statistics.median(v), 1), "p95": round(percentile(v, 0.95), 1)}
        for name, v in samples.items()
        if v
    }
    default = variant_name(config)
    reference = ms.get("opencv" if config.backend == "ssd" else "onnxruntime")
    speedup = reference["p50"] / ms[default]["p50"] if reference and default in ms else None
    return {"ms": ms, "default": default, "speedup": speedup, "notes": notes}


# -- (c), (d) pipeline with and without the motion gate ---------------------------------------------


Trace = dict[int, list[tuple[int, Box]]]  # frame index -> (track id, box) the pipeline believes in


def pipeline_run(
    source: str, config: Config, pool: InferencePool, identity: Any | None
) -> dict[str, Any]:
    events: list[TrackEvent] = []
    pipeline = CameraPipeline("bench", config, pool, events.append, threading.Event(), identity=identity)
    trace: Trace = {}
    pipeline.on_frame = lambda frame, _detected, boxes: trace.__setitem__(frame.index, boxes)
    started = time.perf_counter()
    pipeline.run()
    elapsed = time.perf_counter() - started
    timings = list(pipeline.stats.detect_ms)
    return {
        "frames": pipeline.stats.frames,
        "seconds": elapsed,
        "fps": pipeline.stats.frames / elapsed if elapsed else 0.0,
        "detected": pipeline.stats.frames - pipeline.stats.skipped,
        "tracks": pipeline.track_events.tracks_announced,
        "events": len(events),
        "detect_ms_p50": statistics.median(timings) if timings else None,
        "reasons": dict(pipeline.gate.reasons),
        "trace": trace,
    }


def tracks_of(trace: Trace) -> dict[int, dict[int, Box]]:
    """track id -> {frame index: box}."""
    tracks: dict[int, dict[int, Box]] = defaultdict(dict)
    for index, boxes in trace.items():
        for track_id, box in boxes:
            tracks[track_id][index] = box
    return tracks


def track_recall(reference: Trace, candidate: Trace, min_frames: int) -> tuple[float | None, int]:
    """(fraction of the reference's tracks of >= min_frames frames that one candidate track
    follows on at least half of their frames, how many reference tracks were counted)."""
    wanted = {tid: boxes for tid, boxes in tracks_of(reference).items() if len(boxes) >= min_frames}
    if not wanted:
        return None, 0
    found = tracks_of(candidate)
    recalled = 0
    for boxes in wanted.values():
        best = 0
        for other in found.values():
            hits = sum(1 for i, box in boxes.items() if i in other and iou(box, other[i]) >= RECALL_IOU)
            best = max(best, hits)
        if best * 2 >= len(boxes):
            recalled += 1
    return recalled / len(wanted), len(wanted)


# -- identity's CPU per stage against the detector's ---------------------------------------------


class StageMeter:
    """Process CPU seconds per stage (exclusive of the stages called inside it). One lock serialises
    the measured stages, so a stage's process-CPU delta (its inference threads included) is its own:
    the detector's worker and the camera's identity would otherwise overlap."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._local = threading.local()

    def wrap(self, stage: str, function: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                stack = self._local.__dict__.setdefault("stack", [])
                started = time.process_time()
                stack.append(0.0)
                try:
                    return function(*args, **kwargs)
                finally:
                    spent = time.process_time() - started
                    inner = stack.pop()
                    self.cpu[stage] += spent - inner
                    self.calls[stage] += 1
                    if stack:
                        stack[-1] += spent

        return timed


def stage_shares(source: str, config: Config, pool: InferencePool, extractors: Any) -> dict[str, Any]:
    """The gated pipeline with identity once more, each stage metered: detector (the far pass
    included), identity's face, pose, body/vehicle embedding, matching, the end-of-track conclusion
    (matching and storing) and the rest of identity's bookkeeping; 'other' is decoding, the motion
    gate, tracking and events. Shares are of the process's CPU over the run."""
    from camd.identity.service import IdentityService

    meter = StageMeter()
    detectors = [worker.detector for worker in pool.workers]
    with tempfile.TemporaryDirectory(prefix="camd-bench-") as state:
        private = config.model_copy(update={"state_dir": Path(state)})
        identity = IdentityService(private, extractors=extractors)
        embed = identity.embed_crops
        identity.embed_crops = lambda kind, crops: meter.wrap(f"identity_embed_{kind}", embed)(kind, crops)  # type: ignore[method-assign]
        identity.face_in_person = meter.wrap("identity_face", identity.face_in_person)  # type: ignore[method-assign]
        identity.pose = meter.wrap("identity_pose", identity.pose)  # type: ignore[method-assign]
        identity.conclude = meter.wrap("identity_conclude", identity.conclude)  # type: ignore[method-assign]
        identity.matcher.decide = meter.wrap("identity_match", identity.matcher.decide)  # type: ignore[method-assign]
        camera = identity.camera

        def metered_camera(name: str) -> Any:
            cam = camera(name)
            cam.observe = meter.wrap("identity_other", cam.observe)  # type: ignore[method-assign]
            cam.end = meter.wrap("identity_other", cam.end)  # type: ignore[method-assign]
            return cam

        identity.camera = metered_camera  # type: ignore[method-assign]
        for detector in detectors:
            for method in ("detect", "detect_batch"):
                if hasattr(detector, method):
                    setattr(detector, method, meter.wrap("detector", getattr(detector, method)))
        started = time.process_time()
        try:
            run = pipeline_run(source, config, pool, identity)
        finally:
            total = time.process_time() - started
            for detector in detectors:
                for method in ("detect", "detect_batch"):
                    detector.__dict__.pop(method, None)
            identity.close()
    cpu = dict(meter.cpu)
    identity_s = sum(v for k, v in cpu.items() if k.startswith("identity_"))
    detector_s = cpu.get("detector", 0.0)
    cpu["other"] = max(0.0, total - identity_s - detector_s)
    return {
        "frames": run["frames"],
        "cpu_s": {k: round(v, 2) for k, v in sorted(cpu.items())},
        "share": {k: round(v / total, 3) for k, v in sorted(cpu.items())} if total else {},
        "identity_share": round(identity_s / total, 3) if total else None,
        "detector_share": round(detector_s / total, 3) if total else None,
        "identity_under_detector": identity_s < detector_s,
    }


# -- (e), (g) the daemon in real time, events through a real broker ----------------------------------


class EventClock:
    """A real MQTT subscriber: each event on <prefix>/events with the time it arrived."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.received: list[tuple[float, TrackEvent]] = []
        self._subscribed = threading.Event()
        client_id = f"camd-bench-{uuid.uuid4().hex[:6]}"
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise RuntimeError(f"could not subscribe to {topic} on {host}:{port}")

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        arrived = time.time()
        with contextlib.suppress(ValueError, KeyError, TypeError):  # not one of camd's events
            self.received.append((arrived, event_from_payload(json.loads(message.payload))))

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def latencies(self) -> list[float]:
        """Seconds from the frame an event describes to its arrival, for new and update events
        (an end event is sent lost_track_s after the last frame on purpose)."""
        return [
            arrived - event.after.frame_time
            for arrived, event in self.received
            if event.kind in (EventKind.NEW, EventKind.UPDATE)
        ]


def realtime_run(
    source: str, base: Config, mqtt_host: str, mqtt_port: int, seconds: float | None, identity: bool
) -> dict[str, Any]:
    """The daemon on the clip played at its own pace; events through the broker; state growth."""
    from camd.daemon import Daemon

    state = Path(tempfile.mkdtemp(prefix="camd-bench-"))
    prefix = f"camdbench{uuid.uuid4().hex[:8]}"
    use_mqtt = broker_answers(mqtt_host, mqtt_port)
    config = base.model_copy(update={
        "state_dir": state,
        "mqtt": MqttConfig(enabled=use_mqtt, host=mqtt_host, port=mqtt_port, topic_prefix=prefix,
                           client_id=f"camd-{prefix}"),
        "homeassistant": HomeAssistantConfig(enabled=False),
        "api": ApiConfig(enabled=False),
        "identity": base.identity.model_copy(update={"enabled": identity}),
        "cameras": {"bench": base.cameras["bench"].model_copy(update={"realtime": True, "loop": False})},
    })  # fmt: skip
    clock = EventClock(mqtt_host, mqtt_port, f"{prefix}/events") if use_mqtt else None
    daemon = Daemon(config)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    started = time.monotonic()
    try:
        thread.start()
        while thread.is_alive() and not any(p.stats.frames for p in list(daemon.pipelines.values())):
            time.sleep(0.05)
        first = time.monotonic()
        while thread.is_alive() and (seconds is None or time.monotonic() - first < seconds):
            time.sleep(0.1)
        daemon.stop()
        thread.join(timeout=60)
        time.sleep(0.5)  # the last events' round trip to the subscriber
    finally:
        if clock is not None:
            clock.close()
    pipeline = daemon.pipelines.get("bench")
    played = 0.0
    dropped = 0
    if pipeline is not None and pipeline.stats.first_frame_at is not None and pipeline.stats.last_frame_at:
        played = pipeline.stats.last_frame_at - pipeline.stats.first_frame_at
        dropped = pipeline.stats.dropped + pipeline.source.status.dropped
    stored = folder_bytes(state) - empty_state_bytes(config)
    latencies = clock.latencies() if clock is not None else []
    return {
        "mqtt": use_mqtt,
        "wall_seconds": time.monotonic() - started,
        "video_seconds_played": played,
        "frames": pipeline.stats.frames if pipeline is not None else 0,
        "dropped": dropped,
        "events_received": len(clock.received) if clock is not None else 0,
        "latency_p50_s": statistics.median(latencies) if latencies else None,
        "latency_p95_s": percentile(latencies, 0.95) if latencies else None,
        "latency_events": len(latencies),
        "stored_bytes": stored,
        "tracks": pipeline.track_events.tracks_announced if pipeline is not None else 0,
        "state_dir": str(state),
    }


def empty_state_bytes(config: Config) -> int:
    """What a state folder holds before any video: the empty memory and outbox (their files have a
    fixed size that is not the video's doing)."""
    from camd.identity.memory import Memory
    from camd.publish.outbox import Outbox

    with tempfile.TemporaryDirectory(prefix="camd-bench-empty-") as folder:
        empty = config.model_copy(update={"state_dir": Path(folder), "store": config.store.model_copy()})
        Memory(empty).close()
        if config.mqtt.enabled:
            Outbox(empty.outbox_path).close()
        return folder_bytes(Path(folder))


# -- the command ---------------------------------------------------------------------------------


def bench_config(source: str, args: argparse.Namespace) -> Config:
    return Config(
        models_dir=Path(args.models_dir),
        detector=DetectorConfig(backend=args.backend, workers=args.workers, batch=args.batch),
        mqtt=MqttConfig(enabled=False),
        cameras={"bench": CameraConfig(url=source, detect_fps=args.detect_fps)},
    )


def run_bench(args: argparse.Namespace) -> int:
    models_dir = Path(args.models_dir)
    source = str(default_footage(models_dir)) if args.source == "demo" else args.source
    config = bench_config(source, args)
    use_identity = not args.no_identity
    pool = InferencePool.from_config(config.detector, config.models_path)
    extractors = None
    if use_identity:
        from camd.identity.body_model import log_body_model, resolve_body_model
        from camd.identity.extractors import Extractors

        body_model = resolve_body_model(config.identity, config.models_path, adapted_dir=config.adapted_path)
        log_body_model(body_model)
        extractors = Extractors.load(config, body_model)  # loaded once, shared by every run below
    try:
        result = _measure(source, config, pool, extractors, use_identity, args)
    finally:
        pool.stop()
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


def _measure(
    source: str, config: Config, pool: InferencePool, extractors: Any, use_identity: bool,
    args: argparse.Namespace,
) -> dict[str, Any]:
    decode = decode_only(source)
    video_seconds = decode["frames"] / decode["native_fps"]
    sampled_rate = min(args.detect_fps, decode["native_fps"])
    decode_limit = decode["fps"] * sampled_rate / decode["native_fps"]  # sampled frames/s

    detector = detector_only(pool.detector, sampled_frames(source, args.detect_fps, DETECTOR_SAMPLE_FRAMES))
    detector_limit = 1000.0 / detector["p50"] if detector["p50"] else None
    limit = min(decode_limit, detector_limit) if detector_limit else decode_limit

    gated = _pipeline_with_identity(source, config, pool, extractors, use_identity)
    naive_camera = config.cameras["bench"].model_copy(
        update={"motion": config.cameras["bench"].motion.model_copy(update={"enabled": False})}
    )
    naive_config = config.model_copy(update={"cameras": {"bench": naive_camera}})
    naive = _pipeline_with_identity(source, naive_config, pool, extractors, use_identity)
    min_frames = max(2, round(RECALL_MIN_TRACK_S * args.detect_fps))
    recall, reference_tracks = track_recall(naive["trace"], gated["trace"], min_frames)

    rss_mb = peak_rss_mb()  # one camera's whole pipeline; the real-time run below loads a second daemon
    stages = stage_shares(source, config, pool, extractors) if use_identity else None
    side = detectors_side_by_side(
        config.detector, config.models_path, sampled_frames(source, args.detect_fps, DETECTOR_SAMPLE_FRAMES)
    )
    live = realtime_run(source, config, args.mqtt_host, args.mqtt_port, args.realtime_seconds, use_identity)
    video_bytes = os.path.getsize(source) if os.path.isfile(source) else None
    played_bytes = video_bytes * live["video_seconds_played"] / video_seconds if video_bytes else None
    stored_fraction = live["stored_bytes"] / played_bytes if played_bytes else None
    per_hour = 3600.0 / live["video_seconds_played"] if live["video_seconds_played"] else None

    speedup = gated["fps"] / naive["fps"] if naive["fps"] else None
    ssd = config.detector.backend == "ssd"
    return {
        "source": source,
        "backend": args.backend,
        "runtime": config.detector.runtime,
        "detect_fps": args.detect_fps,
        "identity": use_identity,
        "video_frames": decode["frames"],
        "video_seconds": round(video_seconds, 2),
        # (a)
        "decode_only_fps": round(decode["fps"], 1),
        "decode_limit_sampled_fps": round(decode_limit, 1),
        # (b)
        "detector_ms_p50": _round(detector["p50"]),
        "detector_ms_p95": _round(detector["p95"]),
        "detector_batch4_ms_per_frame": _round(detector["batch_ms_per_frame"]),
        "detector_limit_fps": _round(detector_limit),
        # every runtime of the backend on the same frames, interleaved; the default's speed-up over
        # the reference runtime (OpenCV DNN for the SSD: what camd ran before OpenVINO)
        "detector_ms": side["ms"],
        "detector_default": side["default"],
        "detector_speedup_vs_opencv": _round(side["speedup"], 2) if ssd else None,
        "detector_speedup_vs_onnxruntime": None if ssd else _round(side["speedup"], 2),
        "detector_notes": side["notes"] or None,
        # (c)
        "pipeline_fps": round(gated["fps"], 2),
        "pipeline_ratio_to_limit": round(gated["fps"] / limit, 2) if limit else None,
        "pipeline_x_realtime": round(video_seconds / gated["seconds"], 2) if gated["seconds"] else None,
        "frames_processed": gated["frames"],
        "frames_detected": gated["detected"],
        "tracks": gated["tracks"],
        "events": gated["events"],
        # (d)
        "naive_pipeline_fps": round(naive["fps"], 2),
        "naive_ratio_to_limit": round(naive["fps"] / limit, 2) if limit else None,
        "naive_frames_detected": naive["detected"],
        "naive_tracks": naive["tracks"],
        "motion_gate_speedup": round(speedup, 2) if speedup else None,
        "motion_gate_track_recall": round(recall, 3) if recall is not None else None,
        "recall_reference_tracks": reference_tracks,
        "detector_ran_for": gated["reasons"],
        # identity's CPU per stage against the detector's (the gated pipeline once more, metered)
        "cpu_share_by_stage": stages["share"] if stages else None,
        "cpu_s_by_stage": stages["cpu_s"] if stages else None,
        "identity_cpu_share": stages["identity_share"] if stages else None,
        "detector_cpu_share": stages["detector_share"] if stages else None,
        # (e)
        "latency_p50_s": _round(live["latency_p50_s"], 3),
        "latency_p95_s": _round(live["latency_p95_s"], 3),
        "latency_events": live["latency_events"],
        "latency_note": None if live["mqtt"] else f"no MQTT broker at {args.mqtt_host}:{args.mqtt_port}",
        "realtime_frames": live["frames"],
        "realtime_dropped": live["dropped"],
        # (f)
        "peak_rss_mb": round(rss_mb, 1),
        # (g)
        "stored_bytes": live["stored_bytes"],
        # what is kept grows with tracks, not with the video's bytes: a household's own fraction is
        # its tracks an hour times this, against its cameras' bytes an hour
        "stored_bytes_per_track": round(live["stored_bytes"] / live["tracks"]) if live["tracks"] else None,
        "stored_bytes_per_hour": round(live["stored_bytes"] * per_hour) if per_hour else None,
        "video_bytes_per_hour": round(video_bytes * 3600.0 / video_seconds) if video_bytes else None,
        "stored_fraction_of_video": round(stored_fraction, 6) if stored_fraction is not None else None,
        "targets": _targets(
            gated["fps"] / limit if limit else None, naive["fps"] / limit if limit else None, speedup, recall,
            live["latency_p95_s"], stored_fraction,
        ),
    }


def _pipeline_with_identity(
    source: str, config: Config, pool: InferencePool, extractors: Any, use_identity: bool
) -> dict[str, Any]:
    if not use_identity:
        return pipeline_run(source, config, pool, None)
    from camd.identity.service import IdentityService

    with tempfile.TemporaryDirectory(prefix="camd-bench-") as state:
        private = config.model_copy(update={"state_dir": Path(state)})
        identity = IdentityService(private, extractors=extractors)
        try:
            return pipeline_run(source, config, pool, identity)
        finally:
            identity.close()


def _targets(
    ratio: float | None, naive_ratio: float | None, speedup: float | None, recall: float | None,
    p95: float | None, stored: float | None,
) -> dict[str, bool | None]:
    """Each target of the speed issue met or not (None: not measured). The naive pipeline's ratio
    is the strict one: with the gate on, the pipeline may beat the detector limit."""
    return {
        "pipeline_ratio_at_least_0.8": None if ratio is None else ratio >= TARGETS["pipeline_ratio"],
        "naive_ratio_at_least_0.8": None if naive_ratio is None else naive_ratio >= TARGETS["pipeline_ratio"],
        "gate_speedup_at_least_3x": None if speedup is None else speedup >= TARGETS["gate_speedup"],
        "gate_recall_at_least_0.95": None if recall is None else recall >= 0.95,
        "latency_p95_at_most_1s": None if p95 is None else p95 <= TARGETS["latency_p95_s"],
        "stored_at_most_0.1_percent": None if stored is None else stored <= TARGETS["stored_fraction"],
    }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
