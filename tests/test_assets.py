"""The model manifest and asset preparation, against real PyPI wheels and a real local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from camd.assets import (
    EXPORTERS,
    Asset,
    AssetError,
    DownloadPolicy,
    ManifestError,
    asset_path,
    ensure_asset,
    is_prepared,
    load_manifest,
    prepare_all,
    sha256_file,
)
from camd.types import TRACKED_LABELS

FAST_RETRY = DownloadPolicy(attempts=3, backoff_s=0.05, timeout_s=5.0)
BUS_SHA = "c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63"


def write_manifest(folder: Path, body: str) -> Path:
    path = folder / "manifest.yaml"
    path.write_text("version: 1\nassets:\n" + body, encoding="utf-8")
    return path


def photos_entry(
    version: str = "8.4.190", sha: str = BUS_SHA, member: str = "ultralytics/assets/bus.jpg"
) -> str:
    return f"""
  photos:
    kind: media
    license: AGPL-3.0
    description: bus photo
    prepare: pip download ultralytics
    source: {{type: pypi, package: ultralytics, version: "{version}"}}
    files:
      - {{name: bus.jpg, member: {member}, sha256: {sha}, size: 137419}}
"""


def leftovers(folder: Path) -> list[str]:
    """Files other than the lock and the stamp: half-written downloads would show here."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name not in (".lock", ".camd-verified.json"))


# --- the manifest -----------------------------------------------------------------------------


def test_shipped_manifest_is_valid_and_complete() -> None:
    assets = load_manifest()
    assert {"ssd_mobilenet_v2_coco", "yolov8s_person", "movenet_lightning", "demo_bikes_clip"} <= set(assets)
    for asset in assets.values():
        assert asset.license and asset.description and asset.prepare, asset.id
        # Only registry sources verify here; a URL asset must be optional (camd runs without it).
        assert asset.source_type in ("pypi", "derived") or asset.optional, asset.id
    ssd = assets["ssd_mobilenet_v2_coco"]
    assert [f.name for f in ssd.files] == [
        "frozen_inference_graph.pb",
        "ssd_mobilenet_v2_coco_2018_03_29.pbtxt",
    ]
    yolo = assets["yolov8s_person"]
    assert yolo.backend == "yolo" and yolo.class_map == {0: "person", 1: "person"}
    assert set(yolo.class_map.values()) <= TRACKED_LABELS
    assert "AGPL" in yolo.license
    # One wheel version per package, so preparing everything downloads each wheel once.
    versions: dict[str, set[str | None]] = {}
    for asset in assets.values():
        versions.setdefault(str(asset.package), set()).add(asset.version)
    assert all(len(v) == 1 for v in versions.values()), versions


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("  x:\n    kind: model\n", "missing field 'license'"),
        (photos_entry(sha="abc"), "sha256 must be 64 hex digits"),
        (photos_entry(sha="1" * 64), "as a string"),  # YAML would read it as a number
        (photos_entry().replace("kind: media", "kind: movie"), "kind must be"),
        (photos_entry().replace("name: bus.jpg", "name: ../bus.jpg"), "plain file name"),
        (photos_entry().replace("type: pypi", "type: ftp"), "source.type"),
        ("  [unclosed\n", "not valid YAML"),
    ],
)
def test_manifest_errors_name_the_asset_and_field(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(ManifestError, match="manifest") as info:
        load_manifest(write_manifest(tmp_path, body))
    assert expected in str(info.value)


def test_unknown_asset_id_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match=r"unknown model/asset id 'nope'.*ssd_mobilenet_v2_coco"):
        ensure_asset("nope", tmp_path)


# --- pypi source -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Asset], Path]:
    """The bus photo extracted from the real ultralytics wheel (1.4 MB) by pip download."""
    folder = tmp_path_factory.mktemp("pypi")
    manifest = load_manifest(write_manifest(folder, photos_entry()))
    models = folder / "models"
    path = ensure_asset("photos", models, manifest=manifest)
    return manifest, path


def test_pypi_asset_is_extracted_and_verified(photos: tuple[dict[str, Asset], Path]) -> None:
    manifest, path = photos
    assert path.name == "bus.jpg" and sha256_file(path) == BUS_SHA
    assert path == asset_path("photos", "bus.jpg", path.parents[1], manifest=manifest)
    assert leftovers(path.parent) == ["bus.jpg"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_prepared_asset_is_not_fetched_again(photos: tuple[dict[str, Asset], Path], tmp_path: Path) -> None:
    _, path = photos
    # Same files, but a version pip cannot find: success proves nothing was downloaded.
    unreachable = load_manifest(write_manifest(tmp_path, photos_entry(version="0.0.0.0.1")))
    before = path.stat().st_mtime_ns
    assert ensure_asset("photos", path.parents[1], manifest=unreachable) == path
    assert path.stat().st_mtime_ns == before


def test_damaged_file_is_prepared_again(photos: tuple[dict[str, Asset], Path]) -> None:
    manifest, path = photos
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, new mtime: the stamp no longer vouches for it
    assert not is_prepared(manifest["photos"], path.parents[1])
    ensure_asset("photos", path.parents[1], manifest=manifest)
    assert sha256_file(path) == BUS_SHA


def test_rehash_catches_damage_the_stamp_cannot_see(photos: tuple[dict[str, Asset], Path]) -> None:
    manifest, path = photos
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[2000] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime as verified
    assert is_prepared(manifest["photos"], path.parents[1])  # the fast check trusts the stamp
    assert not is_prepared(manifest["photos"], path.parents[1], rehash=True)
    ensure_asset("photos", path.parents[1], manifest=manifest, rehash=True)
    assert sha256_file(path) == BUS_SHA


def test_pypi_checksum_mismatch_leaves_nothing(tmp_path: Path) -> None:
    manifest = load_manifest(write_manifest(tmp_path, photos_entry(sha="ab" * 32)))
    with pytest.raises(AssetError, match=r"'photos': checksum mismatch for bus.jpg .*ultralytics") as info:
        ensure_asset("photos", tmp_path / "models", manifest=manifest)
    assert BUS_SHA in str(info.value)  # what it actually got, to fix the manifest with
    assert leftovers(tmp_path / "models" / "photos") == []


def test_missing_wheel_member_is_named(tmp_path: Path) -> None:
    manifest = load_manifest(write_manifest(tmp_path, photos_entry(member="ultralytics/assets/nope.jpg")))
    with pytest.raises(AssetError, match=r"has no member 'ultralytics/assets/nope.jpg'"):
        ensure_asset("photos", tmp_path / "models", manifest=manifest)


def test_pip_failure_names_asset_package_and_remedy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real pip against an index that does not answer (pip reads these from the environment).
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    manifest = load_manifest(write_manifest(tmp_path, photos_entry()))
    with pytest.raises(AssetError, match=r"'photos': `pip download ultralytics==8.4.190` failed.*wheelhouse"):
        ensure_asset("photos", tmp_path / "models", manifest=manifest)


def test_wheelhouse_is_used_before_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "ultralytics==8.4.190", "-d", str(wheels)],
        check=True,
    )  # fmt: skip
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # pip would fail now
    monkeypatch.setenv("PIP_RETRIES", "0")
    manifest = load_manifest(write_manifest(tmp_path, photos_entry()))
    path = ensure_asset("photos", tmp_path / "models", manifest=manifest, wheelhouse=wheels)
    assert sha256_file(path) == BUS_SHA


# --- url source --------------------------------------------------------------------------------


class CountingServer:
    """A real HTTP server on loopback: serves files from a folder, or answers a fixed error status."""

    def __init__(self, root: Path, status: int | None = None) -> None:
        self.requests = 0
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

            def do_GET(self) -> None:
                outer.requests += 1
                if status is not None:
                    self.send_error(status)
                else:
                    super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[CountingServer, bytes]]:
    root = tmp_path / "www"
    root.mkdir()
    payload = os.urandom(300_000)
    (root / "model.onnx").write_bytes(payload)
    server = CountingServer(root)
    yield server, payload
    server.close()


def url_entry(url: str, sha: str, size: int | None = None) -> str:
    """The manifest text of asset 'mine': one file downloaded from `url`."""
    size_line = f", size: {size}" if size is not None else ""
    return f"""
  mine:
    kind: model
    license: MIT
    description: a user's model
    prepare: download
    source: {{type: url}}
    files:
      - {{name: model.onnx, url: "{url}", sha256: {sha}{size_line}}}
"""


def url_manifest(folder: Path, url: str, sha: str, size: int | None = None) -> dict[str, Asset]:
    return load_manifest(write_manifest(folder, url_entry(url, sha, size)))


def test_url_download_verified_and_in_place(tmp_path: Path, served: tuple[CountingServer, bytes]) -> None:
    server, payload = served
    sha = hashlib.sha256(payload).hexdigest()
    manifest = url_manifest(tmp_path, f"{server.url}/model.onnx", sha, len(payload))
    path = ensure_asset("mine", tmp_path / "models", manifest=manifest, policy=FAST_RETRY, progress=True)
    assert path.read_bytes() == payload
    assert leftovers(path.parent) == ["model.onnx"]
    ensure_asset("mine", tmp_path / "models", manifest=manifest, policy=FAST_RETRY)
    assert server.requests == 1  # verified once, then trusted


def test_url_checksum_mismatch_removes_the_file(tmp_path: Path, served: tuple[CountingServer, bytes]) -> None:
    server, _ = served
    manifest = url_manifest(tmp_path, f"{server.url}/model.onnx", "ab" * 32)
    with pytest.raises(AssetError, match=r"'mine': checksum mismatch for model.onnx from http://127.0.0.1"):
        ensure_asset("mine", tmp_path / "models", manifest=manifest, policy=FAST_RETRY)
    assert leftovers(tmp_path / "models" / "mine") == []
    assert server.requests == 1  # a wrong file is not fetched again and again


def test_url_server_down_bounded_retries(tmp_path: Path, served: tuple[CountingServer, bytes]) -> None:
    server, _ = served
    url = f"{server.url}/model.onnx"
    server.close()  # nothing listens on that port any more
    manifest = url_manifest(tmp_path, url, "ab" * 32)
    with pytest.raises(AssetError, match=r"'mine': could not download .* after 3 attempt\(s\).*sha256"):
        ensure_asset("mine", tmp_path / "models", manifest=manifest, policy=FAST_RETRY)
    assert leftovers(tmp_path / "models" / "mine") == []


@pytest.mark.parametrize(("status", "attempts"), [(503, 3), (404, 1)])
def test_url_retries_server_errors_not_missing_files(tmp_path: Path, status: int, attempts: int) -> None:
    server = CountingServer(tmp_path, status=status)
    try:
        manifest = url_manifest(tmp_path, f"{server.url}/model.onnx", "ab" * 32)
        with pytest.raises(AssetError, match=f"HTTP {status}"):
            ensure_asset("mine", tmp_path / "models", manifest=manifest, policy=FAST_RETRY)
        assert server.requests == attempts
    finally:
        server.close()


def test_prepare_all_downloads_a_shared_wheel_once(
    tmp_path: Path, served: tuple[CountingServer, bytes]
) -> None:
    server, payload = served
    sha = hashlib.sha256(payload).hexdigest()
    body = photos_entry() + photos_entry().replace("photos:", "photos_again:")
    body += url_entry(f"{server.url}/model.onnx", sha)
    manifest = load_manifest(write_manifest(tmp_path, body))
    done = prepare_all(tmp_path / "models", progress=True, manifest=manifest, policy=FAST_RETRY)
    assert set(done) == {"photos", "photos_again", "mine"}
    assert sha256_file(done["photos_again"]) == BUS_SHA and done["mine"].read_bytes() == payload
    only = prepare_all(tmp_path / "models", ids=["mine"], progress=False, manifest=manifest)
    assert list(only) == ["mine"]


def test_derived_file_without_digest_keeps_the_one_it_made_and_catches_damage(
    tmp_path: Path, served: tuple[CountingServer, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A derived file's bytes vary by CPU, so the manifest carries no sha256 for it: the digest of what
    the exporter wrote is kept in the stamp, and a file damaged later is made again."""
    server, payload = served
    runs: list[Path] = []

    def reverse(source: Path, output: Path) -> None:
        runs.append(source)
        output.write_bytes(source.read_bytes()[::-1])

    monkeypatch.setitem(EXPORTERS, "reverse", reverse)
    sha = hashlib.sha256(payload).hexdigest()
    body = url_entry(f"{server.url}/model.onnx", sha) + """
  made:
    kind: model
    license: MIT
    description: made from mine
    prepare: reversed
    source: {type: derived, from: mine, exporter: reverse}
    files:
      - {name: made.bin}
"""
    manifest = load_manifest(write_manifest(tmp_path, body))
    models = tmp_path / "models"
    made = ensure_asset("made", models, manifest=manifest, policy=FAST_RETRY)
    assert made.read_bytes() == payload[::-1] and len(runs) == 1
    assert is_prepared(manifest["made"], models, rehash=True)
    ensure_asset("made", models, manifest=manifest, policy=FAST_RETRY)
    assert len(runs) == 1  # trusted through its recorded digest, not made again
    made.write_bytes(b"damaged")
    assert not is_prepared(manifest["made"], models, rehash=True)
    ensure_asset("made", models, manifest=manifest, policy=FAST_RETRY, rehash=True)
    assert made.read_bytes() == payload[::-1] and len(runs) == 2


def test_only_a_derived_file_may_omit_its_digest(tmp_path: Path) -> None:
    body = """
  mine:
    kind: model
    license: MIT
    description: a user's model
    prepare: download
    source: {type: url}
    files:
      - {name: model.onnx, url: "https://example.org/m.onnx"}
"""
    with pytest.raises(ManifestError, match="sha256 must be 64 hex digits"):
        load_manifest(write_manifest(tmp_path, body))
