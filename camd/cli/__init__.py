"""The `camd` command line: one module per command group, each registered in COMMAND_GROUPS.

A group module has `register(subparsers)`, which adds its commands and sets each one's `func`.
Heavy modules are imported inside each command so that `camd --help` and `camd check-config`
answer at once. A new group is one new module here and one line in COMMAND_GROUPS.
"""

from __future__ import annotations

import argparse

from camd import __version__
from camd.cli import adapt, demo, history, models, observe, people, run

# In `camd --help` order.
COMMAND_GROUPS = (
    run,  # run, check-config
    demo,  # demo
    models,  # models prepare|list
    observe,  # events, bench
    people,  # enroll, people, correct, forget, eval
    history,  # search, visits, digest
    adapt,  # adapt [--rollback|--reset|--status]
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camd", description="Home-camera identity daemon: who is it?")
    parser.add_argument("--version", action="version", version=f"camd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


__all__ = ["COMMAND_GROUPS", "build_parser", "main"]
