"""`camd events|bench`: watch what camd publishes, and measure how fast it runs on a clip."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    events = sub.add_parser("events", help="print the events camd publishes on MQTT")
    events.add_argument("--host", default="127.0.0.1")
    events.add_argument("--port", type=int, default=1883)
    events.add_argument("--prefix", default="camd")
    events.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")
    events.set_defaults(func=cmd_events)

    bench = sub.add_parser("bench", help="measure decode, detector and pipeline speed on a clip")
    bench.add_argument("source", help="a video file, an RTSP URL, or 'demo' for the demo footage")
    bench.add_argument("--detect-fps", type=float, default=5.0)
    bench.add_argument("--backend", choices=["ssd", "yolo"], default="ssd")
    bench.add_argument("--models-dir", default="var/models")
    bench.add_argument("--workers", type=int, default=1, help="inference workers (detector.workers)")
    bench.add_argument("--batch", type=int, default=1, help="frames per inference call (detector.batch)")
    bench.add_argument("--no-identity", action="store_true", help="leave identity out of the pipeline runs")
    bench.add_argument("--mqtt-host", default="127.0.0.1", help="the broker the latency run publishes to")
    bench.add_argument("--mqtt-port", type=int, default=1883)
    bench.add_argument("--realtime-seconds", type=float, default=None,
                       help="cap the real-time (latency, storage) run; default: the whole clip")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bench.set_defaults(func=cmd_bench)


def cmd_events(args: argparse.Namespace) -> int:
    from camd.publish.watch import watch_events

    return watch_events(args.host, args.port, args.prefix, args.count)


def cmd_bench(args: argparse.Namespace) -> int:
    from camd.bench import run_bench

    return run_bench(args)
