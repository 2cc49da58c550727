"""`camd run|check-config`: the daemon on a config file, and config validation."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from camd.cli.logs import setup_logging, startup_errors


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    run.add_argument("--config", "-c", required=True, help="the YAML config file")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None)
    run.set_defaults(func=cmd_run)

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


def cmd_check_config(args: argparse.Namespace) -> int:
    from camd.config.loader import check_config_main

    return check_config_main(args.config)
