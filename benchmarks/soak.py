"""Soak: the daemon on N looped real streams for a while, RSS and open files sampled every minute.

    .venv/bin/python benchmarks/soak.py --minutes 30 --cameras 4 [--clip PATH] [--no-identity]

Identity is on by default (face/body/gait evidence, a sighting and a crop per finished track), as a
household runs it. Prints one line per sample (RSS, open fds, threads, frames, sightings stored, the
store and crops on disk) and, at the end, the least-squares slope of RSS (MB/hour) and of open file
descriptors (per hour) over the second half of the run (the first half includes warm-up; a run too
short for 3 samples there is fitted whole, and says so).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from camd.bench import least_squares_slope, rss_mb
from camd.config import CameraConfig, Config, MqttConfig
from camd.config.schema import ApiConfig, IdentityConfig
from camd.daemon import Daemon
from camd.demo import broker_answers, default_footage
from camd.malloc import heap_stats


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def folder_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a file replaced while walking
                total += os.stat(os.path.join(root, name)).st_size
    return total / 1e6


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per hour."""
    return least_squares_slope(samples) * 3600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--clip", type=Path, default=None, help="default: vtest.avi or the demo clip")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--max-strangers", type=int, default=IdentityConfig().max_strangers,
                        help="identity.max_strangers: strangers remembered at once (the RAM they hold)")
    parser.add_argument("--no-identity", dest="identity", action="store_false",
                        help="detection and tracking only (identity is on by default)")
    args = parser.parse_args()

    clip = args.clip or default_footage(args.models_dir)
    state = Path(tempfile.mkdtemp(prefix="camd-soak-"))
    use_mqtt = broker_answers("127.0.0.1", 1883)
    config = Config(
        state_dir=state,
        models_dir=args.models_dir,
        # Per process: two soaks side by side (an allocator A/B) must not take each other's session.
        mqtt=MqttConfig(enabled=use_mqtt, topic_prefix=f"camdsoak{os.getpid()}",
                        client_id=f"camd-soak-{os.getpid()}"),
        identity=IdentityConfig(enabled=args.identity, max_strangers=args.max_strangers),
        api=ApiConfig(enabled=False),  # a daemon running beside it keeps its port
        cameras={
            f"cam{i}": CameraConfig(url=str(clip), loop=True, realtime=True) for i in range(args.cameras)
        },
    )
    daemon = Daemon(config)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    started = time.monotonic()
    samples: list[dict[str, float]] = []
    while (elapsed := time.monotonic() - started) < args.minutes * 60:
        time.sleep(min(args.interval, max(0.0, args.minutes * 60 - elapsed)))
        frames = sum(p.stats.frames for p in daemon.pipelines.values())
        dropped = sum(s.dropped for s in daemon.statuses.values()) + sum(
            p.stats.dropped for p in daemon.pipelines.values()
        )  # in the stream readers and in the inference queues
        memory = daemon.identity.memory if daemon.identity is not None else None
        sightings = memory.count_sightings() if memory is not None else 0
        strangers = sum(p["role"] == "stranger" for p in memory.people(True)) if memory is not None else 0
        calls = {k: sum(p.identity.stats.get(k, 0) for p in daemon.pipelines.values() if p.identity)
                 for k in ("embeds", "poses", "face_tries")}  # identity model calls so far
        heap = {f"heap_{k}_mb": round(v, 1) for k, v in heap_stats().items()}  # glibc's view (malloc.py)
        sample = {"t_s": round(time.monotonic() - started), "rss_mb": round(rss_mb(), 1), **heap,
                  "fds": open_fds(), "threads": threading.active_count(), "frames": frames,
                  "dropped": dropped, **calls, "sightings": sightings, "strangers": strangers,
                  "store_mb": round(folder_mb(config.store_path), 2),
                  "log_mb": round(sum(p.stat().st_size for p in state.glob("sightings.sqlite3*")) / 1e6, 2),
                  "crops_mb": round(folder_mb(config.crops_path), 2)}
        samples.append(sample)
        print(json.dumps(sample), flush=True)
    daemon.stop()
    thread.join(timeout=30)
    fitted = samples[len(samples) // 2:]
    window = "second_half"
    if len(fitted) < 3:  # a short check run: fit what there is
        fitted, window = samples, "whole_run"
    rss_trend = slope_per_hour([(s["t_s"], s["rss_mb"]) for s in fitted])
    fds_trend = slope_per_hour([(s["t_s"], s["fds"]) for s in fitted])
    print(json.dumps({
        "cameras": args.cameras, "minutes": args.minutes, "clip": str(clip), "identity": args.identity,
        "max_strangers": args.max_strangers,
        "samples": len(samples), "trend_over": window,
        "rss_start_mb": samples[0]["rss_mb"] if samples else None,
        "rss_end_mb": samples[-1]["rss_mb"] if samples else None,
        "rss_slope_mb_per_hour": round(rss_trend, 2),
        "fds_slope_per_hour": round(fds_trend, 2),
        "sightings_stored": samples[-1]["sightings"] if samples else None,
        "fds_min_max": [min(s["fds"] for s in samples), max(s["fds"] for s in samples)] if samples else None,
    }), flush=True)


if __name__ == "__main__":
    main()
