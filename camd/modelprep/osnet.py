"""Get OSNet weights onto this machine and turn them into the ONNX body embedder, once.

The weights are camd's own default (the manifest's `osnet_x0_25_msmt17`: a commit-pinned URL and its
sha256), or the user's: `identity.osnet.weights_url` (downloaded by camd's asset machinery: bounded retries,
a temp file renamed into place only after its sha256 matched) or `identity.osnet.weights_path` (checked
against the same sha256). A folder given with `camd models prepare --from DIR` is searched for the file
before any download (a hub without internet). The ONNX file is cached under
`<models_dir>/<variant>_<sha256[:12]>/`, beside a small record of what it was made from, so a changed file
or a changed config is never used silently.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camd.assets import Asset, AssetFile, DownloadPolicy, ensure_asset, load_manifest, locked, sha256_file
from camd.identity.evidence.osnet import INPUT_HW
from camd.modelprep.osnet_convert import OSNetWeightsError

if TYPE_CHECKING:
    from camd.config.schema import OSNetConfig

log = logging.getLogger(__name__)

WEIGHTS_NAME = "weights.pth"
RECORD_NAME = "onnx.json"


SHIPPED_ASSET = "osnet_x0_25_msmt17"  # models/manifest.yaml: camd's default weights


@dataclass(frozen=True, slots=True)
class OSNetWeights:
    """Which weights a config means: camd's own (a manifest asset) or the user's (URL or file)."""

    variant: str
    sha256: str
    url: str | None = None
    path: Path | None = None
    asset: str | None = None  # the manifest asset of camd's own weights


def weights_of(config: OSNetConfig) -> OSNetWeights:
    if config.shipped:
        entry = load_manifest()[SHIPPED_ASSET].files[0]
        return OSNetWeights(config.variant, str(entry.sha256), url=entry.url, asset=SHIPPED_ASSET)
    if config.sha256 is None:
        raise OSNetWeightsError("identity.osnet.sha256 is not set: your own OSNet weights need it")
    return OSNetWeights(config.variant, config.sha256, url=config.weights_url, path=config.weights_path)


def space_id(config: OSNetConfig) -> str:
    """`<variant>_<first 12 hex of the weights' sha256>`: names the folder of the converted model.
    Two checkpoints of one architecture (Market-1501 vs MSMT17) embed differently, hence the checksum."""
    weights = weights_of(config)
    return f"{weights.variant}_{weights.sha256[:12]}"


def cached_onnx(config: OSNetConfig, models_dir: Path) -> Path | None:
    """The converted model when it is already prepared and intact (nothing is fetched)."""
    onnx_path = Path(models_dir) / space_id(config) / onnx_name(config)
    return onnx_path if _cached(onnx_path, weights_of(config)) else None


def onnx_name(config: OSNetConfig) -> str:
    return f"{config.variant}_{INPUT_HW[0]}x{INPUT_HW[1]}.onnx"


def prepare_osnet(
    config: OSNetConfig,
    models_dir: Path,
    *,
    progress: bool = False,
    policy: DownloadPolicy | None = None,
    local: Sequence[Path] = (),
) -> Path:
    """The ONNX embedder for these weights: from the cache when it matches, else fetched (`local` folders
    first) and converted."""
    source = weights_of(config)
    folder = Path(models_dir) / space_id(config)
    onnx_path = folder / onnx_name(config)
    if _cached(onnx_path, source):
        return onnx_path
    weights = _weights(config, source, Path(models_dir), progress, policy, local)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSNetWeightsError(f"cannot create {folder}: {exc}; check models_dir") from None
    with locked(folder / ".lock"):
        if _cached(onnx_path, source):  # another process converted it meanwhile
            return onnx_path
        log.info("converting %s weights %s to ONNX (torch, once)", config.variant, weights)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=".export.", dir=folder) as work:
            from camd.modelprep.osnet_convert import export_osnet_onnx

            report = export_osnet_onnx(weights, Path(work) / onnx_path.name, config.variant)
            record = {
                "variant": config.variant,
                "weights_sha256": source.sha256,
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


def _weights(
    config: OSNetConfig,
    source: OSNetWeights,
    models_dir: Path,
    progress: bool,
    policy: DownloadPolicy | None,
    local: Sequence[Path],
) -> Path:
    """The verified weights file: camd's own or the user's download (checked by the assets code), or the
    user's own file (checked here)."""
    if source.asset is not None:
        return ensure_asset(source.asset, models_dir, progress=progress, policy=policy, local=local)
    expected = source.sha256
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
    return ensure_asset(
        asset.id, models_dir, manifest={asset.id: asset}, progress=progress, policy=policy, local=local
    )


def _cached(onnx_path: Path, config: OSNetWeights) -> bool:
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
