"""Get the user's OSNet weights onto this machine and turn them into the ONNX body embedder, once.

The weights come from `identity.osnet.weights_url` (downloaded by camd's asset machinery: bounded retries,
a temp file renamed into place only after its sha256 matched) or `identity.osnet.weights_path` (checked
against the same sha256). The ONNX file is cached under `<models_dir>/<variant>_<sha256[:12]>/`, beside
a small record of what it was made from, so a changed file or a changed config is never used silently.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camd.assets import Asset, AssetFile, DownloadPolicy, _locked, ensure_asset, sha256_file
from camd.identity.evidence.osnet import INPUT_HW
from camd.identity.evidence.osnet.convert import OSNetWeightsError

if TYPE_CHECKING:
    from camd.config.schema import OSNetConfig

log = logging.getLogger(__name__)

WEIGHTS_NAME = "weights.pth"
RECORD_NAME = "onnx.json"


def space_id(config: OSNetConfig) -> str:
    """`<variant>_<first 12 hex of the weights' sha256>`: names the folder and the memory's body space.
    Two checkpoints of one architecture (Market-1501 vs MSMT17) embed differently, hence the checksum."""
    if config.sha256 is None:
        raise OSNetWeightsError("identity.osnet.sha256 is not set: it is required with body_model osnet")
    return f"{config.variant}_{config.sha256[:12]}"


def onnx_name(config: OSNetConfig) -> str:
    return f"{config.variant}_{INPUT_HW[0]}x{INPUT_HW[1]}.onnx"


def prepare_osnet(
    config: OSNetConfig,
    models_dir: Path,
    *,
    progress: bool = False,
    policy: DownloadPolicy | None = None,
) -> Path:
    """The ONNX embedder for these weights: from the cache when it matches, else fetched and converted."""
    folder = Path(models_dir) / space_id(config)
    onnx_path = folder / onnx_name(config)
    if _cached(onnx_path, config):
        return onnx_path
    weights = _weights(config, Path(models_dir), progress, policy)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSNetWeightsError(f"cannot create {folder}: {exc}; check models_dir") from None
    with _locked(folder / ".lock"):
        if _cached(onnx_path, config):  # another process converted it meanwhile
            return onnx_path
        log.info("converting %s weights %s to ONNX (torch, once)", config.variant, weights)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=".export.", dir=folder) as work:
            from camd.identity.evidence.osnet.convert import export_osnet_onnx

            report = export_osnet_onnx(weights, Path(work) / onnx_path.name, config.variant)
            record = {
                "variant": config.variant,
                "weights_sha256": config.sha256,
                "onnx_sha256": sha256_file(report.onnx_path),
                "input_hw": list(INPUT_HW),
                "max_abs_diff_vs_torch": report.max_abs_diff,
            }
            os.chmod(report.onnx_path, 0o644)
            os.replace(report.onnx_path, onnx_path)
            _write_json(folder / RECORD_NAME, record)
        log.info(
            "OSNet %s ready at %s (%.1f s; onnxruntime vs torch max diff %.1e)",
            config.variant, onnx_path, time.monotonic() - started, report.max_abs_diff,
        )  # fmt: skip
    return onnx_path


def _weights(config: OSNetConfig, models_dir: Path, progress: bool, policy: DownloadPolicy | None) -> Path:
    """The verified weights file: the user's own (checked here) or a download (checked by the assets code)."""
    expected = str(config.sha256)
    if config.weights_path is not None:
        path = Path(config.weights_path)
        if not path.is_file():
            raise OSNetWeightsError(
                f"identity.osnet.weights_path {path} does not exist or is not a file; fix the path, or use "
                "weights_url to download it"
            )
        got = sha256_file(path)
        if got != expected:
            raise OSNetWeightsError(
                f"checksum mismatch for identity.osnet.weights_path {path}: expected sha256 {expected} "
                f"(identity.osnet.sha256), got {got}. It is not the file the config names: check that you "
                "copied the right checkpoint, then set identity.osnet.sha256 to its `sha256sum`"
            )
        return path
    asset = Asset(
        id=space_id(config),
        kind="model",
        license="user-supplied weights: see their source's terms (docs/identity.md, OSNet)",
        description=f"OSNet {config.variant} re-ID weights from identity.osnet.weights_url",
        prepare="download over HTTP(S), verify sha256, convert to ONNX",
        source_type="url",
        files=(AssetFile(name=WEIGHTS_NAME, sha256=expected, url=config.weights_url),),
        checksum_remedy=(
            "Check identity.osnet.weights_url and identity.osnet.sha256 in the config: if you trust the file "
            "at that URL, set sha256 to the value got; otherwise fix the URL"
        ),
    )
    return ensure_asset(asset.id, models_dir, manifest={asset.id: asset}, progress=progress, policy=policy)


def _cached(onnx_path: Path, config: OSNetConfig) -> bool:
    """True when the ONNX file is there, was made from these weights and is intact."""
    try:
        record = json.loads((onnx_path.parent / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or not onnx_path.is_file():
        return False
    if record.get("variant") != config.variant or record.get("weights_sha256") != config.sha256:
        return False
    return record.get("onnx_sha256") == sha256_file(onnx_path)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(value, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(temp, path)
