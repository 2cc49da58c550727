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

The speed targets (docs/performance.md), one command:

    PYTHONPATH=. .venv/bin/python benchmarks/cameras.py --targets --source file --json

sweeps the home duty cycle (`--clip home`, below) and the busy scene (`--clip busy`: vtest, walkers
in every frame) up from `--home-from` / `--busy-from` cameras (down when that many already fail),
then runs 4 busy cameras for memory, and prints the figures in one JSON line: cameras_sustained_home
and _busy, cpu_s_per_camera_hour (home), p95 frame -> MQTT latency at those loads, stored bytes per
home-camera hour, rss_mb_4_cameras.

The home duty cycle is composed from vtest (../shared/data): the campus scene emptied (per-pixel
median of 40 frames spread over the clip: the walkers vanish, the parked van and car stay), with
light sensor noise (sigma 1.5 grey levels), for 60 s at 10 frames/s, and three passages a minute of
the real clip (5 s each: vtest frames 100-149, 400-449, 650-699, at 8 s, 28 s and 48 s): people in
view a quarter of the time, as at a front door. The clip loops. With `--source file` the home cameras
are independent, as real ones are: camera i plays the clip from i/N of its length, so their passages
do not all start at once; `--in-step` plays them all from the start (the worst case: every camera's
passage at the same moment; `--targets` reports both).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from camd.bench import EventClock, empty_state_bytes, folder_bytes, percentile, rss_mb
from camd.config import CameraConfig, Config, MqttConfig
from camd.config.schema import ApiConfig, DetectorConfig, HomeAssistantConfig, IdentityConfig, MotionConfig
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
        f"cam{i}": CameraConfig(url=urls[i], detect_fps=args.detect_fps, loop=not live, realtime=not live,
                                motion=MotionConfig(track_refresh_s=args.track_refresh))
        for i in range(n)
    }
    config = Config(
        state_dir=state,
        models_dir=args.models_dir,
        detector=DetectorConfig(
            backend=args.backend,
            precision=args.precision,
            threads=args.threads,
            workers=args.workers,
            batch=args.batch,
            queue_frames=args.queue_frames,
        ),
        mqtt=MqttConfig(enabled=use_mqtt, host=args.mqtt_host, port=args.mqtt_port, topic_prefix=prefix,
                        client_id=f"camd-{prefix}"),
        homeassistant=HomeAssistantConfig(enabled=False),
        api=ApiConfig(enabled=False),
        identity=IdentityConfig(enabled=not args.no_identity, threads=args.identity_threads),
        cameras=cameras,
    )
    clock = EventClock(args.mqtt_host, args.mqtt_port, f"{prefix}/events") if use_mqtt else None
    daemon = Daemon(config)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    run_started = time.monotonic()
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            len(daemon.pipelines) == n and all(p.stats.frames > 0 for p in daemon.pipelines.values())
        ):
            time.sleep(0.2)
        time.sleep(args.warmup)
        before, started, cpu_before = counters(daemon), time.monotonic(), cpu_seconds()
        events_before = len(clock.received) if clock is not None else 0
        time.sleep(args.seconds)
        after, elapsed, cpu = counters(daemon), time.monotonic() - started, cpu_seconds() - cpu_before
        memory = rss_mb()
        window = clock.received[events_before:] if clock is not None else []
    finally:
        daemon.stop()
        thread.join(timeout=60)
        played = time.monotonic() - run_started
        if clock is not None:
            clock.close()
    stored = max(0, folder_bytes(state) - empty_state_bytes(config))
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
        # the whole process (decode, detector, identity, MQTT) per camera-hour of video, in the window
        "cpu_s_per_camera_hour": round(cpu / (n * elapsed / 3600.0), 1),
        # identity memory, crops and outbox over the whole run (warm-up included) per camera-hour
        "stored_bytes_per_camera_hour": round(stored / (n * played / 3600.0)),
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip", default=None,
                        help="a video file, 'home' (the composed duty cycle), 'busy' (vtest); "
                             "default: vtest.avi or the demo clip")  # fmt: skip
    parser.add_argument("--cameras", type=int, default=None, help="one run with this many cameras (no sweep)")
    parser.add_argument("--max-cameras", type=int, default=6)
    parser.add_argument("--from-cameras", type=int, default=1, help="the sweep's first count")
    parser.add_argument("--targets", action="store_true", help="the speed targets (module docstring)")
    parser.add_argument("--home-from", type=int, default=8)
    parser.add_argument("--busy-from", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=40.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--detect-fps", type=float, default=5.0)
    parser.add_argument("--source", choices=["rtsp", "file"], default="rtsp")
    parser.add_argument("--backend", choices=["ssd", "yolo"], default="ssd")
    parser.add_argument("--precision", choices=["auto", "f32", "bf16", "int8"], default="auto",
                        help="the detector's (OpenVINO): auto is camd's default")  # fmt: skip
    parser.add_argument("--threads", type=int, default=DetectorConfig().threads,
                        help="CPU threads per detector call")  # fmt: skip
    parser.add_argument("--workers", type=int, default=DetectorConfig().workers)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--queue-frames", type=int, default=DetectorConfig().queue_frames)
    parser.add_argument("--track-refresh", type=float, default=MotionConfig().track_refresh_s,
                        help="motion.track_refresh_s (still objects re-detected this often)")  # fmt: skip
    parser.add_argument("--no-identity", action="store_true")
    parser.add_argument("--identity-threads", type=int, default=IdentityConfig().threads)
    parser.add_argument("--in-step", action="store_true",
                        help="home cameras all play from the start (passages coincide)")  # fmt: skip
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="camd-cameras-") as folder:
        if args.targets:
            print(json.dumps(targets(args, Path(folder))), flush=True)
            return
        clip = resolve_clip(args.clip, args.models_dir, Path(folder))
        if args.cameras:
            run_counts(clip, [args.cameras], args, Path(folder))
        else:
            sweep(clip, args.from_cameras, args.max_cameras, args, Path(folder))


def resolve_clip(name: str | None, models_dir: Path, folder: Path) -> Path:
    if name == "home":
        return compose_home_clip(SHARED / "video" / "vtest.avi", folder / HOME_NAME)
    if name == "busy":
        return SHARED / "video" / "vtest.avi"
    return Path(name) if name else Path(default_footage(models_dir))


def run_counts(clip: Path, counts: list[int], args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    served = prepare_clip(clip, folder / f"served-{clip.stem}") if args.source == "rtsp" else clip
    results = []
    for n in counts:
        servers = start_servers(served, n) if args.source == "rtsp" else []
        try:
            urls = [s.url for s in servers] if servers else [str(c) for c in phased(served, n, args)]
            result = run_cameras(n, urls, args)
        finally:
            for server in servers:
                server.kill()
        result["clip"] = clip.name
        result["in_step"] = args.in_step or not is_home(clip)
        print(json.dumps(result) if args.json else describe(result), flush=True)
        results.append(result)
    return results


def fresh_run(clip: Path, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One run of `n` cameras in a new process: a daemon's memory, not what the sweep's earlier
    daemons left in this process (4 busy cameras measured 1,565 MB after a sweep, 604 MB alone)."""
    command = [sys.executable, __file__, "--cameras", str(n), "--clip", str(clip), "--json"]
    for option in ("source", "seconds", "warmup", "detect_fps", "backend", "precision", "workers", "batch",
                   "queue_frames", "identity_threads", "mqtt_host", "mqtt_port", "models_dir"):  # fmt: skip
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    if args.no_identity:
        command.append("--no-identity")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    print(json.dumps(result) if args.json else describe(result), flush=True)
    return result


def sweep(clip: Path, start: int, most: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Up from `start` while sustained (to `most`), or down from it until sustained: the largest
    sustained count and that run's figures."""
    best: dict[str, Any] | None = None
    n = start
    (first,) = run_counts(clip, [n], args, folder)
    step = 1 if first["sustained"] else -1
    best = first if first["sustained"] else None
    while 1 <= n + step <= most:
        n += step
        (result,) = run_counts(clip, [n], args, folder)
        if step > 0 and not result["sustained"]:
            break
        if result["sustained"]:
            best = result
            if step < 0:
                break
    return {"sustained": best["cameras"] if best else 0, "run": best}


def targets(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    home_clip, busy_clip = (resolve_clip(name, args.models_dir, folder) for name in ("home", "busy"))
    home = sweep(home_clip, args.home_from, args.max_cameras + 6, args, folder)
    in_step = sweep(home_clip, home["sustained"] or args.home_from, args.max_cameras + 6,
                    argparse.Namespace(**{**vars(args), "in_step": True}), folder)  # fmt: skip
    busy = sweep(busy_clip, args.busy_from, args.max_cameras, args, folder)
    four = fresh_run(busy_clip, 4, args)
    home_run, busy_run = home["run"] or {}, busy["run"] or {}
    return {
        "source": args.source,
        "detect_fps": args.detect_fps,
        "identity_threads": args.identity_threads,
        "precision": args.precision,
        "identity": not args.no_identity,
        "cameras_sustained_home": home["sustained"],
        "cameras_sustained_home_in_step": in_step["sustained"],
        "cameras_sustained_busy": busy["sustained"],
        "cpu_s_per_camera_hour": home_run.get("cpu_s_per_camera_hour"),
        "latency_p95_s_home": home_run.get("latency_p95_s"),
        "latency_p95_s_busy": busy_run.get("latency_p95_s"),
        "stored_bytes_per_camera_hour_home": home_run.get("stored_bytes_per_camera_hour"),
        "rss_mb_4_cameras": four["rss_mb"],
        "targets": {
            "home_at_least_8": home["sustained"] >= 8,
            "busy_at_least_4": busy["sustained"] >= 4,
            "latency_p95_at_most_1s": all(
                r.get("latency_p95_s") is not None and r["latency_p95_s"] <= 1.0 for r in (home_run, busy_run)
            ),
            "rss_4_cameras_at_most_1gb": four["rss_mb"] <= 1024,
        },
    }


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HOME_SECONDS = 60
HOME_FPS = 10
HOME_PASSAGES = ((8, 100), (28, 400), (48, 650))  # (second the passage starts, vtest frame it plays from)
HOME_PASSAGE_FRAMES = 50
HOME_NAME = "home.mp4"


def compose_home_clip(vtest: Path, target: Path) -> Path:
    """The home duty cycle (module docstring): vtest's scene emptied, three real passages a minute."""
    import av

    from tests.support.media import _add_video_stream, _encode

    if not vtest.is_file():
        raise SystemExit(f"the home clip is composed from {vtest}, which is missing")
    with av.open(str(vtest)) as reader:
        frames = [frame.to_ndarray(format="bgr24") for frame in reader.decode(video=0)]
    picks = np.linspace(0, len(frames) - 1, 40).round().astype(int)
    empty = np.median(np.stack([frames[i] for i in picks]), axis=0).astype(np.uint8)
    rng = np.random.default_rng(16)
    passages = {
        start * HOME_FPS + k: frames[first + k]
        for start, first in HOME_PASSAGES
        for k in range(HOME_PASSAGE_FRAMES)
    }
    height, width = empty.shape[:2]
    with av.open(str(target), mode="w") as writer:
        stream = _add_video_stream(writer, HOME_FPS, (width, height), 10)
        for index in range(HOME_SECONDS * HOME_FPS):
            image = passages.get(index)
            if image is None:
                noise = rng.normal(0.0, 1.5, empty.shape)
                image = np.clip(empty.astype(np.float32) + noise, 0, 255).astype(np.uint8)
            _encode(writer, stream, image, index)
        writer.mux(stream.encode(None))
    return target


def is_home(clip: Path) -> bool:
    return clip.name == HOME_NAME


def phased(clip: Path, n: int, args: argparse.Namespace) -> list[Path]:
    """One file per camera: the home clip started at i/n of its length for camera i (independent
    cameras' passages fall at different moments); any other clip, or `--in-step`, the same file."""
    if args.in_step or not is_home(clip):
        return [clip] * n
    return [rotated(clip, round(i * HOME_SECONDS * HOME_FPS / n)) for i in range(n)]


def rotated(clip: Path, first: int) -> Path:
    """The clip played from frame `first`, wrapping round to its start (cached beside it)."""
    import av

    from tests.support.media import _add_video_stream, _encode

    if first == 0:
        return clip
    target = clip.with_name(f"{clip.stem}-from{first}{clip.suffix}")
    if target.exists():
        return target
    def frames(start: int, stop: int | None) -> Iterator[np.ndarray]:
        """Decoded one at a time (the whole clip is ~800 MB of pixels)."""
        with av.open(str(clip)) as reader:
            for frame in itertools.islice(reader.decode(video=0), start, stop):
                yield frame.to_ndarray(format="bgr24")

    with av.open(str(target), mode="w") as writer:
        stream = None
        for index, image in enumerate(itertools.chain(frames(first, None), frames(0, first))):
            if stream is None:
                stream = _add_video_stream(writer, HOME_FPS, (image.shape[1], image.shape[0]), 10)
            _encode(writer, stream, image, index)
        if stream is not None:
            writer.mux(stream.encode(None))
    return target


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
