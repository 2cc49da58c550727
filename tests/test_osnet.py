"""OSNet body backbone: torchreid-compatible weights, download with checksum from a real local HTTP server,
the ONNX export checked against torch on real person crops, and the memory kept apart per body space.

No trained OSNet weights are obtainable offline, so the weights here are a deterministic random init saved
in torchreid's checkpoint layout; they exercise every step except accuracy, which they cannot show.
"""

from __future__ import annotations

import argparse
import http.server
import importlib.util
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from camd.assets import AssetError, DownloadPolicy, asset_path, ensure_asset, load_manifest, sha256_file
from camd.cli import main as camd_main
from camd.config.loader import ConfigError, load_config
from camd.config.schema import DetectorConfig
from camd.identity import enroll
from camd.identity.body_model import resolve_body_model
from camd.identity.evidence.colour import ClothingColourDescriptor
from camd.identity.evidence.osnet import OSNetEmbedder, greyscale
from camd.identity.extractors import Extractors
from camd.identity.memory import PROTOTYPES, SIGHTINGS
from camd.identity.model_files import face_photo
from camd.identity.service import IdentityService
from camd.modelprep.osnet import onnx_name, prepare_osnet, space_id
from camd.modelprep.osnet_convert import OSNetWeightsError, read_state_dict, torch_embed
from camd.modelprep.osnet_network import VARIANTS, build_osnet
from camd.vision.detector import create_detector
from tests.support.identity_data import after_for, identity_config, read_image, track_from_image

pytest_plugins = ["tests.support.identity"]

FAST_RETRY = DownloadPolicy(attempts=3, backoff_s=0.05, timeout_s=10.0)


# --- weights in torchreid's layout, served over real HTTP -------------------------------------------------


def random_osnet_state(variant: str, seed: int) -> dict[str, torch.Tensor]:
    """A deterministic random init, batch-norm statistics included (so eval mode is not an identity map)."""
    model = build_osnet(variant)
    generator = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    for key, tensor in state.items():
        if not tensor.dtype.is_floating_point:
            continue
        noise = torch.randn(tensor.shape, generator=generator)
        if key.endswith("running_var"):
            tensor.copy_(0.5 + noise.abs())
        elif key.endswith(("bn.weight", "IN.weight", "fc.1.weight")):
            tensor.copy_(1.0 + 0.1 * noise)
        else:
            tensor.copy_(0.1 * noise)
    return state


def save_torchreid_checkpoint(path: Path, state: dict[str, torch.Tensor], **extra: Any) -> str:
    """As torchreid's training saves it: under 'state_dict', DataParallel's 'module.' prefix, the classifier
    of the training identities (751: Market-1501) and bookkeeping beside it. Returns the file's sha256."""
    weights = {f"module.{k}": v for k, v in state.items()}
    weights["module.classifier.weight"] = torch.zeros(751, 512)
    weights["module.classifier.bias"] = torch.zeros(751)
    torch.save({"state_dict": weights, "epoch": 150, "rank1": np.float64(0.94), **extra}, path)
    return sha256_file(path)


class WeightsServer:
    """A real HTTP server on loopback serving a folder; it can answer 503 to the first N requests."""

    def __init__(self, root: Path, fail_first: int = 0) -> None:
        self.requests = 0
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                outer.requests += 1
                if outer.requests <= fail_first:
                    self.send_error(503, "warming up")
                else:
                    super().do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """osnet_x1_0 weights as a torchreid .pth.tar, and their sha256."""
    folder = tmp_path_factory.mktemp("www")
    path = folder / "osnet_x1_0_market_256x128.pth.tar"
    return path, save_torchreid_checkpoint(path, random_osnet_state("osnet_x1_0", seed=7))


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """osnet_x0_25 weights (cheaper to convert: the download and retry tests use them)."""
    path = tmp_path_factory.mktemp("www-small") / "osnet_x0_25_msmt17.pth"
    return path, save_torchreid_checkpoint(path, random_osnet_state("osnet_x0_25", seed=1))


@pytest.fixture
def server(checkpoint: tuple[Path, str]) -> Iterator[WeightsServer]:
    running = WeightsServer(checkpoint[0].parent)
    yield running
    running.close()


def url_of(server: WeightsServer, path: Path) -> str:
    return f"{server.url}/{path.name}"


def osnet_settings(url: str, sha: str, variant: str = "osnet_x1_0") -> dict[str, Any]:
    return {"body_model": "osnet", "osnet": {"variant": variant, "weights_url": url, "sha256": sha}}


@pytest.fixture(scope="module")
def prepared(checkpoint: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, int]:
    """The osnet_x1_0 weights downloaded from a real local server and converted, once for the module:
    (ONNX path, the config's osnet section, requests the server saw, preparing twice)."""
    path, sha = checkpoint
    running = WeightsServer(path.parent)
    try:
        settings = osnet_settings(url_of(running, path), sha)
        config = identity_config(
            tmp_path_factory.mktemp("state"), tmp_path_factory.mktemp("models"), **settings
        )
        onnx = prepare_osnet(config.identity.osnet, config.models_path, policy=FAST_RETRY)
        assert prepare_osnet(config.identity.osnet, config.models_path, policy=FAST_RETRY) == onnx
    finally:
        running.close()
    return onnx, config.identity.osnet, running.requests


def bus_people(models_dir: Path) -> list[np.ndarray]:
    """The people the real SSD detector finds in bus.jpg (4 people and a bus), as BGR crops."""
    image = read_image(ensure_asset("sample_photos", models_dir) / "bus.jpg")
    found = [d for d in create_detector(DetectorConfig(), models_dir).detect(image) if d.label == "person"]
    crops = []
    for detection in sorted(found, key=lambda d: -d.score):
        x1, y1, x2, y2 = (round(v) for v in detection.box)
        crops.append(np.ascontiguousarray(image[max(0, y1) : y2, max(0, x1) : x2]))
    assert len(crops) >= 3, "the detector should find at least 3 of bus.jpg's people"
    return crops


# --- the architecture -------------------------------------------------------------------------------------


def test_parameter_names_follow_torchreid() -> None:
    """Names checked against torchreid's osnet.py / osnet_ain.py (KaiyangZhou/deep-person-reid)."""
    plain = {k: tuple(v.shape) for k, v in build_osnet("osnet_x1_0").state_dict().items()}
    assert plain["conv1.conv.weight"] == (64, 3, 7, 7)
    assert plain["conv1.bn.running_mean"] == (64,)
    assert plain["conv2.0.conv1.conv.weight"] == (64, 64, 1, 1)  # 256 // 4 stream channels
    assert plain["conv2.0.conv2a.conv1.weight"] == (64, 64, 1, 1)
    assert plain["conv2.0.conv2d.3.conv2.weight"] == (64, 1, 3, 3)  # depthwise
    assert plain["conv2.0.gate.fc1.weight"] == (4, 64, 1, 1)
    assert plain["conv2.0.gate.fc2.bias"] == (64,)
    assert plain["conv2.0.downsample.conv.weight"] == (256, 64, 1, 1)
    assert plain["conv2.2.0.conv.weight"] == (256, 256, 1, 1)  # the transition after stage 2
    assert plain["conv5.conv.weight"] == (512, 512, 1, 1)
    assert plain["fc.0.weight"] == (512, 512) and plain["fc.1.running_var"] == (512,)
    assert not any(k.startswith(("classifier", "pool2")) or ".IN." in k for k in plain)

    small = {k: tuple(v.shape) for k, v in build_osnet("osnet_x0_25").state_dict().items()}
    assert small["conv1.conv.weight"] == (16, 3, 7, 7) and small["fc.0.weight"] == (512, 128)

    ibn = build_osnet("osnet_ibn_x1_0").state_dict()
    assert "conv2.0.IN.weight" in ibn and "conv3.0.IN.weight" not in ibn
    assert "conv1.bn.running_mean" not in ibn  # instance norm in the stem: no running statistics

    ain = build_osnet("osnet_ain_x1_0").state_dict()
    assert tuple(ain["conv2.0.conv2.3.layers.3.conv2.weight"].shape) == (64, 1, 3, 3)
    assert "pool2.0.conv.weight" in ain and "conv2.2.0.conv.weight" not in ain
    assert "conv2.0.IN.weight" in ain and "conv2.0.conv3.bn.weight" not in ain  # IN inside the residual
    assert "conv3.0.conv3.bn.weight" in ain and "conv3.0.IN.weight" not in ain  # a plain block


def _torchreid_module(models_dir: Path, tmp_path: Path, name: str) -> ModuleType:
    """torchreid 0.2.5's own osnet.py / osnet_ain.py, from its PyPI source archive (needs PyPI)."""
    manifest = tmp_path / "manifest.yaml"
    shas = {
        "osnet": "c7c1c29187d6330f859c91da229271531920464c7011aec13842a086b2263cae",
        "osnet_ain": "a43b495866a4b1645cd134a30c3011592e8c6826ba4781955a135588cf46cd25",
    }
    files = "".join(
        f"      - {{name: {n}.py, member: torchreid-0.2.5/torchreid/reid/models/{n}.py, sha256: {s}}}\n"
        for n, s in shas.items()
    )
    manifest.write_text(
        "version: 1\nassets:\n  torchreid_osnet:\n    kind: media\n    license: MIT\n"
        "    description: reference code\n    prepare: pip download\n"
        '    source: {type: pypi, package: torchreid, version: "0.2.5", sdist: true}\n'
        f"    files:\n{files}",
        encoding="utf-8",
    )
    try:
        folder = ensure_asset("torchreid_osnet", tmp_path / "ref", manifest=load_manifest(manifest))
    except AssetError as exc:
        pytest.skip(f"torchreid's source archive is not reachable on PyPI here: {exc}")
    spec = importlib.util.spec_from_file_location(f"torchreid_{name}", Path(folder) / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_variant_equals_torchreids_own_network(models_dir: Path, tmp_path: Path) -> None:
    """torchreid's published code (run, not copied) and ours: the same keys and shapes, and the same
    output once ours' random weights are loaded into theirs."""
    modules = {name: _torchreid_module(models_dir, tmp_path, name) for name in ("osnet", "osnet_ain")}
    batch = torch.randn(2, 3, 256, 128, generator=torch.Generator().manual_seed(1))
    for variant in VARIANTS:  # widths differ by variant; the three layouts are compared by output too
        reference = getattr(modules["osnet_ain" if "_ain_" in variant else "osnet"], variant)(
            num_classes=10, pretrained=False
        ).eval()
        theirs = {
            k: tuple(v.shape) for k, v in reference.state_dict().items() if not k.startswith("classifier")
        }
        ours = build_osnet(variant).eval()
        assert theirs == {k: tuple(v.shape) for k, v in ours.state_dict().items()}, variant
        if variant not in ("osnet_x1_0", "osnet_ibn_x1_0", "osnet_ain_x1_0"):
            continue
        state = random_osnet_state(variant, seed=3)
        ours.load_state_dict(state, strict=True)
        reference.load_state_dict(
            {**state, **{f"classifier.{k}": v for k, v in reference.classifier.state_dict().items()}}
        )
        with torch.no_grad():
            assert torch.allclose(ours(batch), reference(batch), atol=1e-5), variant


# --- prepare: download, checksum, export ------------------------------------------------------------------


def test_prepare_downloads_verifies_and_exports_matching_torch(
    prepared: tuple[Path, Any, int], checkpoint: tuple[Path, str], models_dir: Path
) -> None:
    onnx, osnet, requests = prepared
    sha = checkpoint[1]
    folder = onnx.parent
    assert (
        folder.name == f"osnet_x1_0_{sha[:12]}" and onnx.name == onnx_name(osnet) == "osnet_x1_0_256x128.onnx"
    )
    assert requests == 1  # downloaded and converted once, then the cache was used
    assert sha256_file(folder / "weights.pth") == sha  # the download, verified and renamed into place
    assert not list(folder.glob(".*.part")) and not list(folder.glob(".export.*"))

    embedder = OSNetEmbedder(onnx)
    crops = bus_people(models_dir)
    vectors = embedder.embed(crops)
    assert vectors.shape == (len(crops), 1024) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The colour half is torch's embedding of the crop, the grey half of its greyscale copy.
    weights = folder / "weights.pth"
    colour = torch_embed(weights, "osnet_x1_0", embedder.model.preprocess(crops))
    grey = torch_embed(weights, "osnet_x1_0", embedder.model.preprocess([greyscale(c) for c in crops]))
    assert np.abs(vectors[:, :512] * np.sqrt(2) - colour).max() < 1e-4
    assert np.abs(vectors[:, 512:] * np.sqrt(2) - grey).max() < 1e-4
    np.testing.assert_allclose(embedder.embed(crops[:1])[0], vectors[0], atol=1e-5)  # batch-independent
    similarity = vectors @ vectors.T
    assert similarity[0, 1] < 0.9999, "different people must not give the same vector"


def test_a_damaged_cached_onnx_is_rebuilt(prepared: tuple[Path, Any, int]) -> None:
    onnx, osnet, _ = prepared
    good = onnx.read_bytes()
    onnx.write_bytes(good[:-10] + b"0123456789")
    assert prepare_osnet(osnet, onnx.parent.parent) == onnx  # from the kept weights: no server needed
    assert onnx.read_bytes() == good  # the export is deterministic


def test_wrong_checksum_is_refused_and_leaves_nothing(
    checkpoint: tuple[Path, str], server: WeightsServer, tmp_path: Path
) -> None:
    path, sha = checkpoint
    wrong = "0" * 64
    config = identity_config(
        tmp_path / "s", tmp_path / "models", **osnet_settings(url_of(server, path), wrong)
    )
    with pytest.raises(AssetError) as caught:
        prepare_osnet(config.identity.osnet, config.models_path, policy=FAST_RETRY)
    message = str(caught.value)
    assert f"expected sha256 {wrong}" in message and f"got {sha}" in message
    assert "identity.osnet.sha256" in message and "The file was discarded" in message
    folder = tmp_path / "models" / f"osnet_x1_0_{wrong[:12]}"
    assert sorted(p.name for p in folder.iterdir() if p.name not in (".lock", ".camd-verified.json")) == []
    assert server.requests == 1  # a wrong file is not fetched again and again


def test_a_server_failing_twice_then_serving_is_retried(
    small_checkpoint: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = small_checkpoint
    flaky = WeightsServer(path.parent, fail_first=2)
    try:
        settings = osnet_settings(url_of(flaky, path), sha, variant="osnet_x0_25")
        config = identity_config(tmp_path / "s", tmp_path / "models", **settings)
        onnx = prepare_osnet(config.identity.osnet, config.models_path, policy=FAST_RETRY)
        assert onnx.is_file() and flaky.requests == 3
    finally:
        flaky.close()


def test_a_server_that_keeps_failing_gives_up_after_the_bounded_attempts(
    small_checkpoint: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = small_checkpoint
    down = WeightsServer(path.parent, fail_first=100)
    try:
        settings = osnet_settings(url_of(down, path), sha, variant="osnet_x0_25")
        config = identity_config(tmp_path / "s", tmp_path / "models", **settings)
        with pytest.raises(AssetError, match=r"after 3 attempt\(s\) \(HTTP 503; HTTP 503; HTTP 503\)"):
            prepare_osnet(config.identity.osnet, config.models_path, policy=FAST_RETRY)
        assert down.requests == 3
    finally:
        down.close()


def test_local_weights_path_is_checked_and_used(small_checkpoint: tuple[Path, str], tmp_path: Path) -> None:
    path, sha = small_checkpoint
    section = {
        "body_model": "osnet",
        "osnet": {"variant": "osnet_x0_25", "weights_path": str(path), "sha256": sha},
    }
    config = identity_config(tmp_path / "s", tmp_path / "models", **section)
    assert prepare_osnet(config.identity.osnet, config.models_path).is_file()

    section["osnet"]["sha256"] = "ab" * 32
    config = identity_config(tmp_path / "s", tmp_path / "models", **section)
    with pytest.raises(OSNetWeightsError, match=rf"expected sha256 {'ab' * 32} .*got {sha}"):
        prepare_osnet(config.identity.osnet, config.models_path)


def test_weights_of_another_architecture_are_refused_clearly(
    small_checkpoint: tuple[Path, str], tmp_path: Path, models_dir: Path
) -> None:
    small, sha = small_checkpoint
    osnet = {"variant": "osnet_x1_0", "weights_path": str(small), "sha256": sha}
    config = identity_config(tmp_path / "s", tmp_path / "models", body_model="osnet", osnet=osnet)
    with pytest.raises(
        OSNetWeightsError, match=r"does not fit osnet_x1_0: .*shape mismatches.*fits osnet_x0_25"
    ):
        prepare_osnet(config.identity.osnet, config.models_path)
    assert not list((tmp_path / "models").rglob("*.onnx"))

    # A real checkpoint of another network: torchvision's MobileNetV2, which camd ships for appearance.
    mobilenet = asset_path("mobilenet_v2_imagenet", "mobilenet_v2-b0353104.pth", models_dir)
    ensure_asset("mobilenet_v2_imagenet", models_dir)
    section = {
        "body_model": "osnet",
        "osnet": {"weights_path": str(mobilenet), "sha256": sha256_file(mobilenet)},
    }
    config = identity_config(tmp_path / "s", tmp_path / "models", **section)
    with pytest.raises(
        OSNetWeightsError, match=r"missing keys \(e.g. conv1.*not an OSNet checkpoint camd knows"
    ):
        prepare_osnet(config.identity.osnet, config.models_path)


def test_a_checkpoint_needing_arbitrary_code_is_not_unpickled(tmp_path: Path) -> None:
    risky = tmp_path / "with_args.pth"
    save_torchreid_checkpoint(risky, random_osnet_state("osnet_x0_25", 2), args=argparse.Namespace(lr=0.1))
    with pytest.raises(
        OSNetWeightsError, match=r"not a checkpoint torch can load safely.*Save only the weights"
    ):
        read_state_dict(risky)
    plain = tmp_path / "plain.pth"
    torch.save(random_osnet_state("osnet_x0_25", 2), plain)  # a bare state dict, no 'module.' prefix
    assert "conv1.conv.weight" in read_state_dict(plain)


# --- config, CLI, daemon models ---------------------------------------------------------------------------


def test_config_requires_weights_and_checksum(tmp_path: Path) -> None:
    config = tmp_path / "camd.yaml"
    config.write_text(
        "identity:\n  body_model: osnet\n  osnet:\n    weights_url: https://example.org/osnet.pth\n"
        "cameras:\n  yard: {url: rtsp://10.0.0.5/s}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"identity.*need identity.osnet.sha256"):
        load_config(config)
    config.write_text(
        "identity:\n  body_model: osnet\n  osnet:\n    weights_url: ftp://x/y.pth\n    sha256: nothex\n"
        "cameras:\n  yard: {url: rtsp://10.0.0.5/s}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert "identity.osnet.weights_url" in str(caught.value) and "identity.osnet.sha256" in str(caught.value)


def test_models_prepare_with_config_fetches_and_the_daemon_models_use_it(
    checkpoint: tuple[Path, str], server: WeightsServer, tmp_path: Path, models_dir: Path,
    identity_models: Extractors, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path, sha = checkpoint
    models = tmp_path / "models"
    models.mkdir()
    for asset in load_manifest():  # the registry models, already prepared: linked, not fetched again
        (models / asset).symlink_to(models_dir / asset, target_is_directory=True)
    config_file = tmp_path / "camd.yaml"
    config_file.write_text(
        f"state_dir: {tmp_path / 'state'}\nmodels_dir: {models}\n"
        f"identity:\n  body_model: osnet\n  osnet:\n    weights_url: {url_of(server, path)}\n"
        f"    sha256: {sha}\n    variant: osnet_x1_0\n"
        "cameras:\n  yard: {url: rtsp://10.0.0.5/s}\n",
        encoding="utf-8",
    )
    assert camd_main(["models", "prepare", "--config", str(config_file)]) == 0
    assert "body model ready: OSNet osnet_x1_0" in capsys.readouterr().out and server.requests == 1
    server.close()  # from now on nothing may be downloaded

    config = load_config(config_file)
    model = resolve_body_model(config.identity, config.models_path)
    assert model.kind == "osnet" and model.fallback_reason is None
    body = model.load()
    assert isinstance(body, OSNetEmbedder) and body.dim == 1024 and body.name == f"osnet_x1_0_{sha[:12]}_cg"
    service = IdentityService(config, extractors=_with_body(identity_models, body))
    try:
        appearance, colour = service.embed_crop("person", bus_people(models_dir)[0])
        assert appearance is not None and appearance.shape == (1024,) and colour is not None
        assert service.crowd.dim == 1024 and service.memory.body_space == body.name
    finally:
        service.close()


def _with_body(models: Extractors, body: Any) -> Extractors:
    return Extractors(body=body, colour=ClothingColourDescriptor(), vehicle=models.vehicle, face=models.face,
                  pose=models.pose, lock=models.lock)  # fmt: skip


# --- the memory keeps body spaces apart -------------------------------------------------------------------


def _body_size(service: IdentityService, collection: str) -> int:
    return service.memory.client.get_collection(collection).config.params.vectors["body"].size  # type: ignore[index]


def test_switching_backbones_keeps_faces_and_never_compares_body_vectors_across_spaces(
    prepared: tuple[Path, Any, int], tmp_path: Path, models_dir: Path, identity_models: Extractors,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    onnx, osnet, _ = prepared
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("obama.jpg", "obama2.jpg"):
        (photos / name).write_bytes(face_photo(models_dir, name).read_bytes())
    state = tmp_path / "state"

    mobilenet = identity_config(state, models_dir, body_model="mobilenetv2")
    before = IdentityService(mobilenet, extractors=_with_body(identity_models, resolve_body_model(
        mobilenet.identity, models_dir).load()))
    enroll.enroll_photos(before, "obama", "family", photos)
    old_protos = before.memory.prototypes("obama")
    assert any("body" in h.vectors for h in old_protos) and any("face" in h.vectors for h in old_protos)
    seen = read_image(face_photo(models_dir, "obama3.jpg"))
    decision = before.finalise(track_from_image(before, seen), after_for("ev-old"), now=1_000_000.0)
    assert decision is not None and decision.name == "obama"
    assert before.memory.sighting("ev-old").vectors["body"].shape == (1280,)
    before.close()

    settings = {"body_model": "osnet", "osnet": osnet.model_dump(mode="json")}
    config = identity_config(state, onnx.parent.parent, **settings)
    model = resolve_body_model(config.identity, config.models_path)
    space = model.space
    assert space == f"{space_id(osnet)}_cg" and model.onnx == onnx
    with caplog.at_level(logging.WARNING, logger="camd.identity.memory"):
        after = IdentityService(config, extractors=_with_body(identity_models, model.load()))
    try:
        # Nobody is asked to enroll again: obama's kept crops are embedded by the new model at start.
        assert f"mobilenetv2 -> {space}" in caplog.text
        assert "of 1 people with kept enrollment crops" in caplog.text
        assert "No body prototypes any more for nobody enrolled" in caplog.text
        assert _body_size(after, f"{PROTOTYPES}_{space}") == 1024 and _body_size(after, PROTOTYPES) == 1280
        carried = after.memory.prototypes("obama")
        assert {h.key for h in carried} == {h.key for h in old_protos}
        bodies = [h for h in carried if "body" in h.vectors]
        assert bodies and all(h.vectors["body"].shape == (1024,) for h in bodies)
        assert not any(h.payload.get("reembed") for h in bodies)
        # The re-embedded vector is the new model's embedding of the kept crop, not a converted old one.
        kept = after.memory.enrollment_crops.load(bodies[0].payload["crops"])
        again = after.embed_crop("person", kept[0])[0]
        assert again is not None and float(np.dot(again, bodies[0].vectors["body"])) > 0.99
        # obama is recognised by body in the new space: his own prototype is the nearest to a new photo.
        probe = after.embed_crop("person", read_image(face_photo(models_dir, "obama3.jpg")))[0]
        hits = after.memory.search(PROTOTYPES, "body", probe, now=1e10)
        assert hits and hits[0].person_id == "obama" and hits[0].vectors["body"].shape == (1024,)
        # The sighting log keeps each body vector under its space: the old one is not offered here.
        old_sighting = after.memory.sighting("ev-old")
        assert "body" not in old_sighting.vectors and "face" in old_sighting.vectors
        exported = dict(after.memory.everything_of("obama")[SIGHTINGS])[SIGHTINGS]
        assert exported.vectors["body@mobilenetv2"].shape == (1280,)

        assert after.memory.client.count(PROTOTYPES).count > 0  # the 1280-d space stays, for switching back
        crops_folder = after.memory.enrollment_crops.folder
        assert any(crops_folder.iterdir())
        enroll.forget(after, "obama")  # forgetting reaches every body space and the kept crops
        for collection in (PROTOTYPES, f"{PROTOTYPES}_{space}"):
            assert after.memory.client.count(collection).count == 0, collection
        assert after.memory.sightings("obama") == [] and after.memory.count_sightings() == 0
        assert not any(crops_folder.iterdir())
    finally:
        after.close()


def test_weights_that_cannot_be_had_fall_back_to_mobilenet_and_say_so(
    small_checkpoint: tuple[Path, str], tmp_path: Path, models_dir: Path, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """No network for the weights: the daemon still starts, on MobileNetV2, and says so in its log line
    at start, in /health's identity section and in the run summary."""
    from camd.api.status import identity_health
    from camd.daemon import Daemon
    from tests.support.media import make_clip

    path, sha = small_checkpoint
    down = WeightsServer(path.parent, fail_first=1_000)  # answers every request with an error
    # A models folder with everything prepared except OSNet (links to the session's prepared models).
    models = tmp_path / "models"
    models.mkdir()
    for entry in models_dir.iterdir():
        if not entry.name.startswith("osnet"):
            (models / entry.name).symlink_to(entry)
    try:
        settings = osnet_settings(url_of(down, path), sha, variant="osnet_x0_25")
        config = identity_config(tmp_path / "state", models, **settings)
        clip = make_clip(tmp_path / "empty.mp4", frames=10, size=(320, 240))
        cameras = {"yard": {"url": str(clip), "detect_fps": 5}}
        config = config.model_validate({**config.model_dump(mode="json"), "cameras": cameras})
        with caplog.at_level(logging.WARNING, logger="camd.identity.body_model"):
            daemon = Daemon(config, mqtt=False)
            summary = daemon.run(install_signals=False)
        assert down.requests == 1  # one try at start, no retry loop holding the daemon up
        line = next(r.getMessage() for r in caplog.records if "FALLBACK" in r.getMessage())
        assert "MobileNetV2" in line and "OSNet unavailable" in line and "camd models prepare" in line
        health = identity_health(daemon.identity)
        assert health is not None and health["body_model"]["model"] == "mobilenetv2"
        assert "OSNet unavailable" in str(health["body_model"]["fallback"])
        assert summary.body_model is not None and "fallback: OSNet unavailable" in summary.body_model
        assert any(line.startswith("body model: MobileNetV2") for line in summary.lines())
        left = [p.name for p in models.glob("osnet*/*") if p.suffix in (".pth", ".onnx", ".part")]
        assert left == []  # nothing half-downloaded is left to be taken for the weights
    finally:
        down.close()


def _lin_body_track(service: IdentityService, clip: Path, first_frame: int) -> Any:
    """A body-only track of Lin-Manuel Miranda from his labelled boxes (camd/eval/truth/hamilton.json)
    at and after `first_frame`: five crops, embedded by the service's body model, no face."""
    import cv2

    from camd.eval.truth import load_truth
    from camd.identity.track import KeptCrop, TrackEvidence

    lin = next(p for p in load_truth("hamilton").people if p.label == "lin-manuel-miranda")
    wanted = {s.frame: s.box for passage in lin.passages for s in passage.samples if s.frame >= first_frame}
    frames = sorted(wanted)[:: max(1, len(wanted) // 5)][:5]
    evidence = TrackEvidence(kind="person", best_k=5, camera="yard", frames=len(frames))
    capture = cv2.VideoCapture(str(clip))
    index = 0
    while frames and index <= frames[-1]:
        ok, image = capture.read()
        assert ok, clip
        if index in frames:
            x1, y1, x2, y2 = (int(v) for v in wanted[index])
            crop = np.ascontiguousarray(image[y1:y2, x1:x2])
            appearance, colour = service.embed_crop("person", crop)
            evidence.crops.append(KeptCrop(1.0, crop, (x1, y1, x2, y2), float(index), appearance, colour))
        index += 1
    capture.release()
    return evidence


def test_switching_to_the_shipped_osnet_reembeds_and_still_recognises_by_body(
    tmp_path: Path, models_dir: Path, identity_models: Extractors,
) -> None:  # fmt: skip
    """MobileNetV2 -> the real OSNet x0.25 (MSMT17): someone enrolled from a clip is embedded again from
    their kept crops at start, and recognised by body alone later in the clip, without enrolling again."""
    from camd.identity.body_model import BodyModel
    from tests.support.data import shared_data

    shipped = resolve_body_model(identity_config(tmp_path / "probe", models_dir).identity, models_dir,
                                 prepare=False)  # fmt: skip
    if shipped.kind != "osnet":
        pytest.skip("the shipped OSNet weights are not prepared (make test does, from ../shared/models)")
    clip = shared_data("faces/examples/short_hamilton_clip.mp4")
    state = tmp_path / "state"

    def service(config: Any, model: BodyModel) -> IdentityService:
        return IdentityService(config, extractors=_with_body(identity_models, model.load()))

    mobilenet = identity_config(state, models_dir, body_model="mobilenetv2")
    before = service(mobilenet, resolve_body_model(mobilenet.identity, models_dir))
    try:
        enroll.enroll_clip(before, "lin", "family", clip, end_s=4.0)
    except enroll.TrackChoiceNeeded as choice:
        best = max(choice.tracks, key=lambda row: (row["faces"], row["frames"]))
        enroll.enroll_clip(before, "lin", "family", clip, track=best["track"], end_s=4.0)
    before.close()

    after = service(identity_config(state, models_dir), shipped)  # the default: OSNet
    try:
        bodies = [h.vectors["body"] for h in after.memory.prototypes("lin") if "body" in h.vectors]
        assert bodies and all(v.shape == (1024,) for v in bodies)
        track = _lin_body_track(after, clip, first_frame=150)  # 5 s and later: never enrolled from
        decision = after.finalise(track, after_for("ev-later"), now=1e6)
        assert decision is not None and decision.name == "lin", decision
        assert decision.evidence["face"] is None and decision.evidence["body"] is not None
    finally:
        after.close()
