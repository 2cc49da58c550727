"""`camd demo`: enroll someone and recognise them on real footage, nothing to configure (camd/demo.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    demo = sub.add_parser(
        "demo", help="enroll someone and recognise them on real footage, with nothing to configure"
    )
    demo.add_argument("--source", default=None, help="your own video file or RTSP URL instead of the clips")
    demo.add_argument("--data", type=Path, default=None,
                      help="the shared data folder with the demo clips (default: ../shared/data if present)")
    demo.add_argument("--camera", action="append", default=[], metavar="NAME",
                      help="play only this demo camera (stage, campus); repeatable")
    demo.add_argument("--state-dir", type=Path, default=None,
                      help="keep the demo's memory here (default: a temporary folder: each run starts clean)")
    demo.add_argument("--models-dir", type=Path, default=Path("var/models"))
    demo.add_argument("--verbose", "-v", action="store_true",
                      help="also print every new / update / end event, undecided tracks included")
    demo.add_argument("--mqtt-host", default="127.0.0.1")
    demo.add_argument("--mqtt-port", type=int, default=1883)
    demo.add_argument("--no-mqtt", action="store_true", help="do not publish even when a broker answers")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from camd.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(
        source=args.source, data=args.data, cameras=args.camera, state_dir=args.state_dir,
        models_dir=args.models_dir, mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port,
        mqtt=not args.no_mqtt, verbose=args.verbose,
    ))  # fmt: skip
