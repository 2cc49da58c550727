"""What the daemon is doing right now: the health report and the Prometheus metrics text."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any, Protocol

from camd import __version__
from camd.config import Config

if TYPE_CHECKING:
    from camd.pipeline import CameraPipeline
    from camd.publish.mqtt import MqttPublisher
    from camd.service.watchdog import PipelineWatchdog
    from camd.vision.pool import InferencePool

# A rate measured over frames that stopped arriving this long ago is no longer a rate.
STALE_RATE_S = 10.0


class DaemonView(Protocol):
    """The parts of camd.daemon.Daemon the API reads."""

    config: Config
    pipelines: dict[str, CameraPipeline]
    publisher: MqttPublisher | None
    pool: InferencePool | None


def camera_health(pipeline: CameraPipeline, now: float) -> dict[str, Any]:
    status = pipeline.source.status
    age = now - status.last_frame_at if status.last_frame_at is not None else None
    fresh = age is not None and age < STALE_RATE_S
    return {
        "state": status.state,
        "fps": round(status.fps, 2) if fresh else 0.0,  # frames/s handed to the pipeline, recent
        "last_frame_age_s": round(age, 3) if age is not None else None,
        "frames_processed": pipeline.stats.frames,
        "frames_skipped": pipeline.stats.skipped,  # by the motion gate (no detector call)
        "events": pipeline.stats.events,
        # frames lost because camd fell behind: in the stream reader and in the inference queue
        "dropped": status.dropped + pipeline.stats.dropped,
        "dropped_inference": pipeline.stats.dropped,
        "inference_queue": pipeline.stats.queued,
        # a live camera's seconds from a frame's arrival to the end of its processing (recent p50)
        "processing_latency_s": _recent_median(pipeline.stats.latency_s) if pipeline.source.drops_when_behind
        else None,
        "reconnects": status.reconnects,
        "last_error": status.last_error,  # credentials already masked by the source
        "width": status.width,
        "height": status.height,
    }


def _recent_median(values: Any) -> float | None:
    recent = list(values)
    return round(statistics.median(recent), 3) if recent else None


def health_report(
    daemon: DaemonView, watchdog: PipelineWatchdog | None, started_at: float
) -> dict[str, Any]:
    """status: "ok" (every enabled camera online), "degraded" (some are not), "starting"
    (no camera running yet) or "stalled" (cameras online, no frame processed for service.stall_s)."""
    now = time.time()
    pipelines = daemon.pipelines.copy()  # the daemon adds pipelines while the API already serves
    cameras: dict[str, Any] = {}
    for name, camera in daemon.config.cameras.items():
        pipeline = pipelines.get(name)
        if pipeline is not None:
            cameras[name] = camera_health(pipeline, now)
        else:
            cameras[name] = {"state": "disabled" if not camera.enabled else "starting"}
    running = [c for name, c in cameras.items() if daemon.config.cameras[name].enabled]
    if watchdog is not None and watchdog.stalled:
        overall = "stalled"
    elif not pipelines:
        overall = "starting"
    elif all(c["state"] == "online" for c in running):
        overall = "ok"
    else:
        overall = "degraded"
    publisher = daemon.publisher
    return {
        "status": overall,
        "version": __version__,
        "uptime_s": round(time.monotonic() - started_at, 1),
        "cameras": cameras,
        "watchdog": None if watchdog is None else {
            "stalled": watchdog.stalled,
            "stall_s": watchdog.stall_s,
            "seconds_without_progress": round(watchdog.seconds_without_progress(), 1),
        },
        "mqtt": None if publisher is None else {"connected": publisher.connected, **publisher.stats()},
        "inference": pool_health(getattr(daemon, "pool", None)),
        "identity": identity_health(getattr(daemon, "identity", None)),
    }


def identity_health(identity: Any) -> dict[str, Any] | None:
    """Which body model recognises people without a face, and whether it is a fallback."""
    if identity is None or not identity.enabled:
        return None
    return {"body_model": identity.body_model.status()}


def pool_health(pool: InferencePool | None) -> dict[str, Any] | None:
    if pool is None:
        return None
    timings = list(pool.recent_ms)
    return {
        "workers": len(pool.workers),
        "batch": pool.batch,
        "calls": pool.calls,
        "frames": pool.frames,
        "errors": pool.errors,
        "ms_per_frame_p50": round(statistics.median(timings), 1) if timings else None,
    }


# -- Prometheus text format (version 0.0.4) -------------------------------------------------------

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Metrics:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            shown = ",".join(f'{key}="{_label_value(val)}"' for key, val in labels.items())
            self.lines.append(f"{name}{{{shown}}} {value:g}" if shown else f"{name} {value:g}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def metrics_text(daemon: DaemonView, watchdog: PipelineWatchdog | None, started_at: float) -> str:
    now = time.time()
    out = _Metrics()
    out.family("camd_info", "gauge", "camd version", [({"version": __version__}, 1)])
    out.family("camd_uptime_seconds", "gauge", "Seconds since the daemon started",
               [({}, time.monotonic() - started_at)])
    pipelines = daemon.pipelines.copy()  # the daemon adds pipelines while the API already serves
    per_camera = {name: (p, camera_health(p, now)) for name, p in pipelines.items()}

    def each(value: Any) -> list[tuple[dict[str, str], float]]:
        return [({"camera": name}, float(value(p, h))) for name, (p, h) in sorted(per_camera.items())]

    out.family("camd_camera_up", "gauge", "1 when the camera stream is online",
               each(lambda _p, h: h["state"] == "online"))
    out.family("camd_camera_fps", "gauge", "Frames per second handed to the pipeline (recent)",
               each(lambda _p, h: h["fps"]))
    out.family("camd_camera_last_frame_age_seconds", "gauge", "Seconds since the last frame (-1: none yet)",
               each(lambda _p, h: -1 if h["last_frame_age_s"] is None else h["last_frame_age_s"]))
    out.family("camd_camera_frames_processed_total", "counter", "Frames through detection and tracking",
               each(lambda p, _h: p.stats.frames))
    out.family("camd_camera_events_total", "counter", "Events produced (new, update, end)",
               each(lambda p, _h: p.stats.events))
    out.family("camd_camera_frames_dropped_total", "counter",
               "Frames dropped because the pipeline fell behind (stream reader and inference queue)",
               each(lambda _p, h: h["dropped"]))
    out.family("camd_camera_inference_dropped_total", "counter",
               "Frames dropped from the camera's inference queue (oldest first): the detector fell behind",
               each(lambda _p, h: h["dropped_inference"]))
    out.family("camd_camera_inference_queue_frames", "gauge", "Frames in the camera's inference queue",
               each(lambda _p, h: h["inference_queue"]))
    out.family("camd_camera_frames_skipped_total", "counter", "Frames the motion gate kept from the detector",
               each(lambda p, _h: p.stats.skipped))
    out.family("camd_camera_reconnects_total", "counter", "Failed stream attempts (open errors, drops)",
               each(lambda _p, h: h["reconnects"]))
    timings = [ms for p in pipelines.values() for ms in list(p.stats.detect_ms)]
    if timings:
        out.family("camd_detector_latency_ms_p50", "gauge", "Median detector time per frame, recent frames",
                   [({}, statistics.median(timings))])
    pool = getattr(daemon, "pool", None)
    if pool is not None:
        out.family("camd_inference_calls_total", "counter", "Detector calls (one call may hold a batch)",
                   [({}, pool.calls)])
        out.family("camd_inference_frames_total", "counter", "Frames through the detector",
                   [({}, pool.frames)])
        out.family("camd_inference_errors_total", "counter", "Frames the detector failed on",
                   [({}, pool.errors)])
    if watchdog is not None:
        out.family("camd_watchdog_stalled", "gauge", "1 when cameras are online but no frame is processed",
                   [({}, float(watchdog.stalled))])
    if daemon.publisher is not None:
        stats = daemon.publisher.stats()
        out.family("camd_mqtt_connected", "gauge", "1 when connected to the broker",
                   [({}, float(daemon.publisher.connected))])
        out.family("camd_mqtt_queued", "gauge", "Messages waiting in the outbox", [({}, stats["queued"])])
        out.family("camd_mqtt_delivered_total", "counter", "Messages acknowledged by the broker",
                   [({}, stats["delivered"])])
        out.family("camd_mqtt_dropped_total", "counter", "Messages dropped because the outbox was full",
                   [({}, stats["dropped"])])
        out.family("camd_mqtt_reconnects_total", "counter", "Broker reconnects", [({}, stats["reconnects"])])
    return out.text()
