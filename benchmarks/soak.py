"""Soak: the daemon on N looped real streams for a while, RSS and open files sampled every minute.

    .venv/bin/python benchmarks/soak.py --minutes 30 --cameras 4 [--clip PATH]

Prints one line per sample and, at the end, the least-squares slope of RSS (MB/hour) and of open
file descriptors (per hour) over the second half of the run (the first half includes warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from camd.config import CameraConfig, Config, MqttConfig
from camd.daemon import Daemon
from camd.demo import broker_answers, default_footage


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return cov / var * 3600.0 if var else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--clip", type=Path, default=None, help="default: vtest.avi or the demo clip")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    args = parser.parse_args()

    clip = args.clip or default_footage(args.models_dir)
    state = Path(tempfile.mkdtemp(prefix="camd-soak-"))
    use_mqtt = broker_answers("127.0.0.1", 1883)
    config = Config(
        state_dir=state,
        models_dir=args.models_dir,
        mqtt=MqttConfig(enabled=use_mqtt, topic_prefix="camdsoak", client_id="camd-soak"),
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
        dropped = sum(s.dropped for s in daemon.statuses.values())
        sample = {"t_s": round(time.monotonic() - started), "rss_mb": round(rss_mb(), 1),
                  "fds": open_fds(), "threads": threading.active_count(), "frames": frames,
                  "dropped": dropped}
        samples.append(sample)
        print(json.dumps(sample), flush=True)
    daemon.stop()
    thread.join(timeout=30)
    second_half = samples[len(samples) // 2:]
    rss_trend = slope_per_hour([(s["t_s"], s["rss_mb"]) for s in second_half])
    fds_trend = slope_per_hour([(s["t_s"], s["fds"]) for s in second_half])
    print(json.dumps({
        "cameras": args.cameras, "minutes": args.minutes, "clip": str(clip),
        "rss_start_mb": samples[0]["rss_mb"] if samples else None,
        "rss_end_mb": samples[-1]["rss_mb"] if samples else None,
        "rss_slope_mb_per_hour_second_half": round(rss_trend, 2),
        "fds_slope_per_hour_second_half": round(fds_trend, 2),
        "fds_min_max": [min(s["fds"] for s in samples), max(s["fds"] for s in samples)] if samples else None,
    }), flush=True)


if __name__ == "__main__":
    main()
