"""`camd adapt`: fine-tune the body network on this installation's own tracks (docs/adaptation.md).

    camd adapt [--config FILE]          train, check, replace only when better (niced, thread cap, time bound)
    camd adapt --status                 the network in use, the ones before it, the last run
    camd adapt --rollback               back to the network in use before (re-embeds everyone)
    camd adapt --reset                  delete every adapted network; the shipped one again
Needs torch (`pip install 'camd[adapt]'`) for training only; --status, --rollback and --reset do not.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("adapt", help="fine-tune the body network on this installation's own tracks")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--rollback", action="store_true", help="use the network in use before the current one")
    what.add_argument("--reset", action="store_true", help="delete every adapted network")
    what.add_argument("--status", action="store_true", help="which network is in use, and the last run")
    parser.add_argument("--max-minutes", type=float, default=None, help="default: adapt.max_minutes")
    parser.add_argument("--epochs", type=float, default=None, help="default: adapt.epochs")
    parser.add_argument("--config", "-c", default=None, help="the daemon's YAML config (finds the state)")
    parser.add_argument("--state-dir", default="var", help="without --config: where the state lives")
    parser.add_argument("--models-dir", default=None, help="without --config: default <state-dir>/models")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=cmd_adapt)


def cmd_adapt(args: argparse.Namespace) -> int:
    from camd.adapt.store import AdaptedStore, AdaptStoreError
    from camd.adapt.train import AdaptError
    from camd.cli.people import _config
    from camd.config.loader import ConfigError

    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from camd.adapt import run

    base, current = run.base_and_current(config)
    store = AdaptedStore(config.adapted_path, base.space)
    try:
        if args.status:
            return _print(args, _status(store, current))
        if args.rollback:
            was, now = store.rollback()
            return _print(args, {"rolled_back": was, "in_use": now or "the shipped network",
                                 **run.apply(config)})  # fmt: skip
        if args.reset:
            removed = store.reset()
            return _print(args, {"removed": removed, "in_use": "the shipped network", **run.apply(config)})
        outcome = run.adapt(config, max_seconds=None if args.max_minutes is None else args.max_minutes * 60,
                            epochs=args.epochs)  # fmt: skip
    except (AdaptError, AdaptStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result = outcome.as_dict()
    if outcome.decision.replace:
        result.update(run.apply(config))
    return _print(args, result)


def _status(store: Any, current: Any) -> dict[str, Any]:
    from camd.adapt.run import last_run

    state = store.state()
    return {"in_use": current.label, "body_space": current.space, "current": state["current"],
            "previous": state["previous"], "kept": [a.id for a in store.history()],
            "last_run": last_run(store)}  # fmt: skip


def _print(args: argparse.Namespace, result: dict[str, Any]) -> int:
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return 0
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")
    return 0
