"""How many cameras one hub sustains: N simultaneous real streams, N rising until frames drop.

    PYTHONPATH=. .venv/bin/python benchmarks/cameras.py [--clip PATH] [--max-cameras 6] [--json]
    PYTHONPATH=. .venv/bin/python benchmarks/cameras.py --cameras 4      # one run with 4 cameras

Each camera is a real RTSP stream (GStreamer's RTSP server from tests/support/rtsp.py, one server
process per camera, playing the clip in real time from its start) read by the real daemon at
`--detect-fps`, with identity and MQTT on as in production (MQTT when a broker answers). After a
warm-up, the daemon's own counters are read twice `--seconds` apart: per camera the frames
processed per second and the frames dropped (stream reader + inference queue). N is sustained
when every camera keeps >= 95% of detect_fps and no frame is dropped. `--source file` uses looped
files played in real time instead of RTSP (no server processes on the same cores).

The RTSP server ends each stream at the end of the clip: warm-up + seconds must stay below the
clip's length (vtest.avi: 79 s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from camd.bench import EventClock, percentile, rss_mb
from camd.config import CameraConfig, Config, MqttConfig
from camd.config.schema import ApiConfig, DetectorConfig, HomeAssistantConfig, IdentityConfig
from camd.daemon import Daemon
from camd.demo import broker_answers, default_footage
from camd.types import EventKind


def counters(daemon: Daemon) -> dict[str, tuple[int, int, int]]:
    """camera -> (frames processed, frames dropped, detector calls)."""
    out = {}
    for name, pipeline in daemon.pipelines.items():
        dropped = pipeline.stats.dropped + pipeline.source.status.dropped
        out[name] = (pipeline.stats.frames, dropped, pipeline.stats.frames - pipeline.stats.skipped)
    return out


def run_cameras(n: int, urls: list[str], args: argparse.Namespace) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix=f"camd-cameras-{n}-"))
    prefix = f"camdcams{uuid.uuid4().hex[:8]}"
    use_mqtt = broker_answers(args.mqtt_host, args.mqtt_port)
    live = args.source == "rtsp"
    cameras = {
        f"cam{i}": CameraConfig(url=urls[i], detect_fps=args.detect_fps, loop=not live, realtime=not live)
        for i in range(n)
    }
    config = Config(
        state_dir=state,
        models_dir=args.models_dir,
        detector=DetectorConfig(backend=args.backend, workers=args.workers, batch=args.batch),
        mqtt=MqttConfig(enabled=use_mqtt, host=args.mqtt_host, port=args.mqtt_port, topic_prefix=prefix,
                        client_id=f"camd-{prefix}"),
        homeassistant=HomeAssistantConfig(enabled=False),
        api=ApiConfig(enabled=False),
        identity=IdentityConfig(enabled=not args.no_identity),
        cameras=cameras,
    )
    clock = EventClock(args.mqtt_host, args.mqtt_port, f"{prefix}/events") if use_mqtt else None
    daemon = Daemon(config)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            len(daemon.pipelines) == n and all(p.stats.frames > 0 for p in daemon.pipelines.values())
        ):
            time.sleep(0.2)
        time.sleep(args.warmup)
        before, started = counters(daemon), time.monotonic()
        events_before = len(clock.received) if clock is not None else 0
        time.sleep(args.seconds)
        after, elapsed = counters(daemon), time.monotonic() - started
        memory = rss_mb()
        window = clock.received[events_before:] if clock is not None else []
    finally:
        daemon.stop()
        thread.join(timeout=60)
        if clock is not None:
            clock.close()
    per_camera = {}
    for name in sorted(after):
        frames = after[name][0] - before.get(name, (0, 0, 0))[0]
        dropped = after[name][1] - before.get(name, (0, 0, 0))[1]
        detected = after[name][2] - before.get(name, (0, 0, 0))[2]
        per_camera[name] = {"fps": round(frames / elapsed, 2), "dropped": dropped,
                            "detector_calls_per_s": round(detected / elapsed, 2)}
    latencies = [
        arrived - event.after.frame_time
        for arrived, event in window
        if event.kind in (EventKind.NEW, EventKind.UPDATE)
    ]
    timings = list(daemon.pool.recent_ms) if daemon.pool is not None else []
    sustained = len(per_camera) == n and all(
        c["fps"] >= 0.95 * args.detect_fps and c["dropped"] == 0 for c in per_camera.values()
    )
    return {
        "cameras": n,
        "sustained": sustained,
        "per_camera": per_camera,
        "total_fps": round(sum(c["fps"] for c in per_camera.values()), 2),
        "dropped": sum(c["dropped"] for c in per_camera.values()),
        "detect_ms_p50": round(statistics.median(timings), 1) if timings else None,
        "latency_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "latency_p95_s": round(percentile(latencies, 0.95), 3) if latencies else None,
        "latency_events": len(latencies),
        "rss_mb": round(memory, 1),
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip", type=Path, default=None, help="default: vtest.avi or the demo clip")
    parser.add_argument("--cameras", type=int, default=None, help="one run with this many cameras (no sweep)")
    parser.add_argument("--max-cameras", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=40.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--detect-fps", type=float, default=5.0)
    parser.add_argument("--source", choices=["rtsp", "file"], default="rtsp")
    parser.add_argument("--backend", choices=["ssd", "yolo"], default="ssd")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--no-identity", action="store_true")
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    args = parser.parse_args()

    clip = args.clip or default_footage(args.models_dir)
    counts = [args.cameras] if args.cameras else list(range(1, args.max_cameras + 1))
    with tempfile.TemporaryDirectory(prefix="camd-cameras-") as folder:
        served = prepare_clip(Path(clip), Path(folder)) if args.source == "rtsp" else Path(clip)
        for n in counts:
            servers = start_servers(served, n) if args.source == "rtsp" else []
            try:
                urls = [s.url for s in servers] if servers else [str(served)] * n
                result = run_cameras(n, urls, args)
            finally:
                for server in servers:
                    server.kill()
            print(json.dumps(result) if args.json else describe(result), flush=True)
            if not result["sustained"] and args.cameras is None:
                break


def prepare_clip(clip: Path, folder: Path) -> Path:
    """An MP4 with a short GOP, as GStreamer's server wants it and a camera sends it."""
    from tests.support.media import transcode

    return transcode(clip, folder / "served.mp4", gop=10)


def start_servers(clip: Path, n: int) -> list[Any]:
    from tests.support.rtsp import RtspServer, gstreamer_rtsp_missing

    missing = gstreamer_rtsp_missing()
    if missing:
        raise SystemExit(f"GStreamer's RTSP server is not available ({missing}); use --source file")
    return [RtspServer(clip, mount=f"/cam{i}").start() for i in range(n)]


def describe(result: dict[str, Any]) -> str:
    cams = ", ".join(
        f"{name} {c['fps']} fps/{c['dropped']} dropped" for name, c in result["per_camera"].items()
    )
    return (
        f"{result['cameras']} camera(s): {'SUSTAINED' if result['sustained'] else 'not sustained'}; {cams}; "
        f"detector p50 {result['detect_ms_p50']} ms; latency p50/p95 {result['latency_p50_s']}/"
        f"{result['latency_p95_s']} s; RSS {result['rss_mb']} MB"
    )


if __name__ == "__main__":
    main()
