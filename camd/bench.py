"""`camd bench SOURCE`: how fast each stage runs on one real clip, measured in one run.

Figures: decode-only frames/s (every frame decoded to BGR: the ceiling no pipeline beats),
detector ms per frame (p50/p95), the full pipeline's frames/s at the detect rate with the motion
gate and without it (the naive detect-every-sampled-frame baseline), and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import av

from camd.config import CameraConfig, Config, DetectorConfig
from camd.demo import default_footage
from camd.pipeline import CameraPipeline, SharedDetector
from camd.vision.detector import create_detector


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


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


def pipeline_run(source: str, config: Config, detector: SharedDetector) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    pipeline = CameraPipeline("bench", config, detector, events.append, threading.Event())
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
        "detect_ms_p95": percentile(timings, 0.95) if timings else None,
    }


def run_bench(args: argparse.Namespace) -> int:
    models_dir = Path(args.models_dir)
    source = str(default_footage(models_dir)) if args.source == "demo" else args.source
    config = Config(
        models_dir=models_dir,
        detector=DetectorConfig(backend=args.backend),
        cameras={"bench": CameraConfig(url=source, detect_fps=args.detect_fps)},
    )
    detector = SharedDetector(create_detector(config.detector, config.models_path))
    decode = decode_only(source)
    run = pipeline_run(source, config, detector)
    naive_camera = config.cameras["bench"].model_copy(
        update={"motion": config.cameras["bench"].motion.model_copy(update={"enabled": False})}
    )
    naive = pipeline_run(source, config.model_copy(update={"cameras": {"bench": naive_camera}}), detector)
    video_seconds = decode["frames"] / decode["native_fps"]
    result = {
        "source": source,
        "backend": args.backend,
        "detect_fps": args.detect_fps,
        "video_frames": decode["frames"],
        "video_seconds": round(video_seconds, 2),
        "decode_only_fps": round(decode["fps"], 1),
        "detector_ms_p50": _round(run["detect_ms_p50"]),
        "detector_ms_p95": _round(run["detect_ms_p95"]),
        "pipeline_fps": round(run["fps"], 2),
        "pipeline_x_realtime": round(video_seconds / run["seconds"], 2) if run["seconds"] else None,
        "frames_processed": run["frames"],
        "frames_detected": run["detected"],
        "tracks": run["tracks"],
        "events": run["events"],
        "naive_pipeline_fps": round(naive["fps"], 2),
        "naive_tracks": naive["tracks"],
        "motion_gate_speedup": round(run["fps"] / naive["fps"], 2) if naive["fps"] else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
