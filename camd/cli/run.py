"""`camd run|demo|check-config`: the daemon, on a config or on demo footage, and config validation."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from camd.cli.logs import setup_logging, startup_errors


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    run.add_argument("--config", "-c", required=True, help="the YAML config file")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="run on real footage with nothing to configure, events on the console")
    demo.add_argument("--source", type=str, default=None, help="a video file or RTSP URL to use instead")
    demo.add_argument("--state-dir", default="var/demo", help="where the demo keeps its store and outbox")
    demo.add_argument("--models-dir", default="var/models")
    demo.add_argument("--mqtt-host", default="127.0.0.1")
    demo.add_argument("--mqtt-port", type=int, default=1883)
    demo.add_argument("--no-mqtt", action="store_true", help="do not publish even when a broker answers")
    demo.set_defaults(func=cmd_demo)

    check = sub.add_parser("check-config", help="validate a config file; every error with its field and line")
    check.add_argument("config")
    check.set_defaults(func=cmd_check_config)


def cmd_run(args: argparse.Namespace) -> int:
    from camd.config.loader import ConfigError, describe, load_config
    from camd.daemon import Daemon

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    setup_logging(args.log_level or config.log_level)
    for line in describe(config).splitlines():  # one log line per item, journal-friendly
        logging.getLogger("camd").info("config: %s", line)
    try:
        summary = Daemon(config).run()
    except startup_errors() as exc:
        logging.getLogger("camd").error("cannot start: %s", exc)
        return 1
    for line in summary.lines():
        logging.getLogger("camd").info(line)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from camd.daemon import Daemon
    from camd.demo import broker_answers, demo_config
    from camd.publish.console import ConsoleSink

    console = Console(highlight=False)
    setup_logging("warning")
    config = demo_config(
        args.source, Path(args.state_dir), Path(args.models_dir), args.mqtt_host, args.mqtt_port
    )
    use_mqtt = not args.no_mqtt and broker_answers(args.mqtt_host, args.mqtt_port)
    footage = config.cameras["demo"].url.get_secret_value()
    console.print(f"[bold]camd demo[/]: {footage} at {config.cameras['demo'].detect_fps:g} detect frames/s")
    if use_mqtt:
        console.print(f"events also published to mqtt://{args.mqtt_host}:{args.mqtt_port} on camd/events")
    else:
        console.print("no MQTT broker answered: events shown here only")
    try:
        summary = Daemon(config, extra_sinks=[ConsoleSink(console)], mqtt=use_mqtt).run()
    except startup_errors() as exc:
        console.print(f"[red]cannot start: {exc}[/]")
        return 1
    console.print("[bold]summary[/]")
    for line in summary.lines():
        console.print("  " + line)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from camd.config.loader import check_config_main

    return check_config_main(args.config)
