"""camd adapt: fine-tuning the body network on the installation's own tracks (docs/adaptation.md).

Real crops (reid/train), the real OSNet weights, real training (a few batches: the benchmark,
benchmarks/adapt_household.py, runs the full schedule), the real ONNX export and the real memory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from camd.adapt.check import check, decide, embed_tracks
from camd.adapt.emulate import cross_camera_similarities, household_install, reid_household
from camd.adapt.store import AdaptedStore, adapted_space, calibration_to_dict
from camd.adapt.tracks import AdaptTrack, known_different, load_tracks
from camd.config.schema import IdentityConfig
from camd.identity.body_compare import _is_grey
from camd.identity.body_model import resolve_body_model
from camd.identity.calibrations import OSNET_X0_25_MSMT17, calibration_for
from camd.identity.crops import CropStore
from camd.identity.evidence.osnet import OSNetEmbedder, greyscale
from tests.support.data import shared_data
from tests.support.identity_data import identity_config

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["tests.support.identity"]
TRAIN_BATCHES = 20  # a few: enough to move the network measurably, ~1 min on 2 busy cores


@pytest.fixture(scope="module")
def base(models_dir: Path) -> Any:
    model = resolve_body_model(IdentityConfig(), models_dir, prepare=False)
    if model.kind != "osnet":
        pytest.skip(f"OSNet is not prepared in {models_dir}: camd models prepare --from ../shared/models")
    return model


@pytest.fixture(scope="module")
def weights(models_dir: Path, base: Any) -> Path:
    from camd.assets import ensure_asset

    return ensure_asset("osnet_x0_25_msmt17", models_dir)


@pytest.fixture(scope="module")
def reid() -> Any:
    from camd.eval.reid import load_reid

    return load_reid(shared_data("reid/train"))


def _people(reid: Any) -> tuple[np.ndarray, np.ndarray]:
    people = np.unique(reid.query_ids)
    return people[0::2], people[1::2]  # learned from / never trained on


def _train(
    tracks: list[AdaptTrack], weights: Path, out: Path, batches: int = TRAIN_BATCHES, rate: float = 5e-5
) -> Path:
    import random

    from camd.adapt.train import _batches, build_labels, export_onnx, fine_tune, load_base

    network = load_base(weights, "osnet_x0_25")
    per_epoch = len(_batches(build_labels(tracks), random.Random(0)))
    fine_tune(network, tracks, epochs=batches / per_epoch, threads=1, learning_rate=rate)
    export_onnx(network, "osnet_x0_25", out)
    return out


@pytest.fixture(scope="module")
def adapted_onnx(reid: Any, weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OSNet adapted with camera-local signals only, on half of reid/train's people."""
    learn, _ = _people(reid)
    return _train(reid_household(reid, learn), weights, tmp_path_factory.mktemp("adapted") / "model.onnx")


# -- what adaptation learns from ---------------------------------------------------------------------


def _track(key: str, camera: str, start: float, end: float, person: str | None = None) -> AdaptTrack:
    return AdaptTrack(key, camera, start, end, (np.zeros((8, 4, 3), np.uint8),) * 2, person)


def test_only_surely_different_tracks_are_negatives() -> None:
    a, b = _track("a", "door", 0, 10), _track("b", "door", 5, 15)
    later, elsewhere = _track("c", "door", 20, 30), _track("d", "yard", 0, 10)
    anna, bob, anna2 = _track("e", "yard", 0, 5, "anna"), _track("f", "door", 50, 60, "bob"), \
        _track("g", "door", 0, 3, "anna")  # fmt: skip
    assert known_different(a, b)  # two people on one camera at once
    assert not known_different(a, later) and not known_different(a, elsewhere)  # may be the same person
    assert known_different(anna, bob)  # confirmed as two people, whenever and wherever
    assert not known_different(anna, anna2) and anna.label == anna2.label  # one person across cameras


def test_kept_crops_are_read_and_forget_removes_them_from_training(tmp_path: Path, models_dir: Path) -> None:
    from camd.identity.memory import Memory

    config = identity_config(tmp_path / "state", models_dir)
    memory = Memory(config, resolve_body_model(config.identity, models_dir, prepare=False))
    try:
        crops = CropStore(config.crops_path)
        memory.save_person({"person_id": "anna", "name": "anna", "role": "family", "kind": "person"})
        rng = np.random.default_rng(0)
        for n, person in enumerate(("anna", None, None)):
            paths = [str(crops.save(f"s{n}~{k}", rng.integers(0, 255, (128, 48, 3), np.uint8), 1e9).path)
                     for k in range(4)]  # fmt: skip
            memory.add_sighting(f"s{n}", {}, {
                "camera": "door", "label": "person", "start_time": 100.0 + n, "end_time": 110.0 + n,
                "person_id": person, "crop": paths[0], "crops": paths, "corrected": person is not None,
            })  # fmt: skip
        tracks = load_tracks(config.sightings_path)
        assert sorted((t.key, t.person, len(t.crops)) for t in tracks) == [
            ("s0", "anna", 4), ("s1", None, 4), ("s2", None, 4)]
        memory.forget("anna")
        assert sorted(t.key for t in load_tracks(config.sightings_path)) == ["s1", "s2"]
        assert not list(config.crops_path.rglob("s0~*.jpg")), "anna's crops stay on disk"
    finally:
        memory.close()


# -- the adapted network ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_adaptation_moves_same_person_up_and_different_person_down_on_people_it_never_saw(
    reid: Any, base: Any, adapted_onnx: Path
) -> None:
    _, unseen = _people(reid)
    before = cross_camera_similarities(OSNetEmbedder(base.onnx), reid, unseen)
    after = cross_camera_similarities(OSNetEmbedder(adapted_onnx), reid, unseen)
    figures = {part: {k: (round(before[part][k], 3), round(after[part][k], 3)) for k in before[part]}
               for part in before}  # fmt: skip
    for part in ("camd", "colour"):  # camd's vector (colour + grey halves), and the network's colour output
        # Same-person pairs across the two cameras (one blue-tinted) move up relative to different-person
        # pairs: the mean gap widens and a same-person pair outscores a different-person one more often.
        # (Absolute cosines all move: the network spreads everyone apart, strangers most.)
        gap = [v[part]["genuine"] - v[part]["impostor"] for v in (before, after)]
        assert gap[1] > gap[0] + 0.02, figures
        assert after[part]["auc"] > before[part]["auc"], figures
        assert after[part]["impostor"] < before[part]["impostor"] - 0.02, figures


def test_averaging_with_the_base_lands_between_the_two_networks(weights: Path) -> None:
    from camd.adapt.train import average_with_base, load_base, require_torch

    torch = require_torch()
    base = load_base(weights, "osnet_x0_25").state_dict()
    network = load_base(weights, "osnet_x0_25")
    with torch.no_grad():
        for value in network.state_dict().values():
            if value.is_floating_point():
                value += 1.0  # a stand-in for fine-tuning: every weight moved by 1
    average_with_base(network, weights, "osnet_x0_25", 0.5)
    averaged = network.state_dict()
    floats = [k for k, v in base.items() if v.is_floating_point()]
    assert floats and all(torch.allclose(averaged[k], base[k] + 0.5, atol=1e-5) for k in floats)
    assert all(torch.equal(averaged[k], base[k]) for k in base if k not in floats)  # counters kept


@pytest.mark.slow
@pytest.mark.shared_data
def test_guardrail_refuses_a_network_trained_with_shuffled_labels(
    reid: Any, base: Any, weights: Path, tmp_path: Path
) -> None:
    learn, unseen = _people(reid)
    household = reid_household(reid, learn)
    rng = np.random.default_rng(0)
    pool = [c for t in household for c in t.crops]
    order = rng.permutation(len(pool))
    shuffled, start = [], 0
    for t in household:  # every track now holds crops of random people
        shuffled.append(AdaptTrack(t.key, t.camera, t.start, t.end,
                                   tuple(pool[i] for i in order[start : start + len(t.crops)])))  # fmt: skip
        start += len(t.crops)
    # At the default rate a few batches barely move the weights (and refreshing the normalisation
    # statistics on this footage alone helps): issue 14's rate makes the wrong labels count.
    bad = _train(shuffled, weights, tmp_path / "shuffled.onnx", rate=3e-4)
    # The installation's own check: tracks it never trained on, people named on both cameras.
    held_out = reid_household(reid, unseen, confirm=len(unseen), crops=4)
    before = check(held_out, embed_tracks(OSNetEmbedder(base.onnx), held_out))
    after = check(held_out, embed_tracks(OSNetEmbedder(bad), held_out))
    assert {"self", "cross"} <= set(before.parts)
    assert after.score is not None and before.score is not None
    assert after.score < before.score, (before, after)
    decision = decide(before, after)
    assert not decision.replace and "worse" in decision.reason, decision


@pytest.mark.slow
@pytest.mark.shared_data
def test_rollback_restores_the_previous_embeddings(
    tmp_path: Path, models_dir: Path, base: Any, adapted_onnx: Path, identity_models: Any
) -> None:
    from camd.cli import main as camd_main
    from camd.identity import enroll
    from camd.identity.model_files import face_photo
    from camd.identity.service import IdentityService

    state = tmp_path / "state"
    config = identity_config(state, models_dir)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("obama.jpg", "obama2.jpg"):
        shutil.copyfile(face_photo(models_dir, name), photos / name)
    service = IdentityService(config, extractors=identity_models)
    enroll.enroll_photos(service, "obama", "family", photos)
    original = {h.key: h.vectors["body"] for h in service.memory.prototypes("obama") if "body" in h.vectors}
    service.close()
    assert original

    # An adapted network put in use (as `camd adapt` does after the guardrail passed).
    store = AdaptedStore(config.adapted_path, base.space)
    kept = store.add("test-net", adapted_onnx, {
        "created": time.time(), "onnx_sha256": "5eed" * 16, "grey_half": "base",
        "calibration": calibration_to_dict(calibration_for(base)),
    })  # fmt: skip
    store.use(kept)
    adapted = resolve_body_model(config.identity, models_dir, prepare=False, adapted_dir=config.adapted_path)
    assert adapted.space == adapted_space(base.space, kept) != base.space and adapted.onnx == kept.onnx
    assert adapted.grey_onnx == base.onnx  # the colour half is the adapted network's, the grey the shipped

    def bodies() -> tuple[str, dict[str, np.ndarray]]:
        service = IdentityService(config, load_extractors=True)  # re-embeds at open when the space changed
        try:
            return service.memory.body_space, {h.key: h.vectors["body"] for h in service.memory.prototypes(
                "obama") if "body" in h.vectors}  # fmt: skip
        finally:
            service.close()

    space, embedded = bodies()
    assert space == adapted.space and embedded.keys() == original.keys()
    assert all(not np.allclose(embedded[k], original[k], atol=1e-3) for k in original)

    args = ["adapt", "--rollback", "--state-dir", str(state), "--models-dir", str(models_dir), "--json"]
    assert camd_main(args) == 0
    space, restored = bodies()
    assert space == base.space and restored.keys() == original.keys()
    for key, vector in original.items():
        np.testing.assert_allclose(restored[key], vector, atol=1e-6)


@pytest.mark.slow
@pytest.mark.shared_data
def test_an_adapted_network_serves_the_colour_half_and_the_shipped_one_the_grey_half(
    tmp_path: Path, models_dir: Path, reid: Any, base: Any, adapted_onnx: Path
) -> None:
    store = AdaptedStore(tmp_path / "adapted", base.space)
    record = {"created": 1, "onnx_sha256": "d" * 64, "grey_half": "base",
              "calibration": calibration_to_dict(calibration_for(base))}  # fmt: skip
    store.use(store.add("colour", adapted_onnx, record))
    model = resolve_body_model(IdentityConfig(), models_dir, prepare=False, adapted_dir=tmp_path / "adapted")
    assert model.adapted == "colour" and model.space != base.space
    _, unseen = _people(reid)
    crops = [reid.query[i] for i in np.flatnonzero(np.isin(reid.query_ids, unseen))[:12]]
    crops += [reid.gallery[i] for i in np.flatnonzero(np.isin(reid.gallery_ids, unseen))[:12]]
    hybrid, original = model.load(threads=1), base.load(threads=1)
    adapted, shipped = hybrid.embed(crops), original.embed(crops)
    half = adapted.shape[1] // 2
    np.testing.assert_allclose(adapted[:, half:], shipped[:, half:], atol=1e-5)  # the shipped grey half
    colour = np.sum(2.0 * adapted[:, :half] * shipped[:, :half], axis=1)  # cosine of the colour halves
    assert np.all(colour < 0.999) and np.mean(colour) < 0.99, colour  # the adapted network's own
    both = OSNetEmbedder(adapted_onnx, threads=1).embed(crops)  # the same network on both halves
    np.testing.assert_allclose(both[:, :half], adapted[:, :half], atol=1e-5)
    assert not np.allclose(both[:, half:], adapted[:, half:], atol=1e-3)
    # A grey crop (an IR camera) is still known as one by the matcher: its halves agree, as with one network.
    greys = [greyscale(c) for c in crops]
    assert all(_is_grey(v) for v in hybrid.embed(greys)) and all(_is_grey(v) for v in original.embed(greys))
    assert not any(_is_grey(v) for v in adapted)


# -- the store, the daemon ------------------------------------------------------------------------------


def test_current_network_rollback_and_reset(
    tmp_path: Path, base: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store = AdaptedStore(tmp_path / "adapted", base.space)
    calibration = calibration_to_dict(OSNET_X0_25_MSMT17)
    first = store.add("one", base.onnx, {"created": 1, "onnx_sha256": "a" * 64, "calibration": calibration})
    second = store.add("two", base.onnx, {"created": 2, "onnx_sha256": "b" * 64, "calibration": calibration})
    store.use(first)
    store.use(second)
    resolve = lambda: resolve_body_model(  # noqa: E731
        IdentityConfig(), base.onnx.parent.parent, prepare=False, adapted_dir=tmp_path / "adapted")
    model = resolve()
    assert model.adapted == "two" and model.space == base.space.replace("_cg", "_adbbbbbbbb_cg")
    assert calibration_for(model) == OSNET_X0_25_MSMT17 and "adapted to this installation" in model.label
    assert store.rollback() == ("two", "one") and resolve().adapted == "one"
    assert store.rollback() == ("one", None) and resolve() == base
    store.use(second)
    (second.folder / "model.onnx").unlink()  # damaged: the base network, said in the log
    assert resolve() == base and "missing or damaged" in caplog.text
    assert store.reset() == 1 and not store.folder.exists() and resolve() == base

    # A network that serves the colour half only (what camd adapt keeps now): a space of its own, and the
    # base network embeds the grey half.
    hybrid = store.add("three", base.onnx, {"created": 3, "onnx_sha256": "c" * 64, "calibration": calibration,
                                            "grey_half": "base"})  # fmt: skip
    store.use(hybrid)
    model = resolve()
    assert model.space == base.space.replace("_cg", "_adccccccccc_cg") and model.grey_onnx == base.onnx
    assert store.rollback() == ("three", None) and resolve() == base and base.grey_onnx is None


def test_the_daemons_path_never_imports_torch(tmp_path: Path, models_dir: Path) -> None:
    code = (
        "import sys\n"
        "import camd.daemon, camd.adapt.schedule, camd.adapt.store, camd.cli.adapt, camd.identity.service\n"
        "from camd.config.schema import IdentityConfig\n"
        "from camd.identity.body_model import resolve_body_model\n"
        f"resolve_body_model(IdentityConfig(), {str(models_dir)!r}, prepare=False,\n"
        f"                   adapted_dir={str(tmp_path)!r})\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.slow
@pytest.mark.shared_data
def test_the_daemon_keeps_running_during_camd_adapt(tmp_path: Path, models_dir: Path, reid: Any) -> None:
    from camd.daemon import Daemon
    from tests.support.daemon import run_in_thread
    from tests.support.service import wait_for

    clip = models_dir / "demo_bikes_clip" / "bikes.mp4"
    config_file, config = household_install(
        tmp_path, models_dir, clip, reid, "{min_tracks: 8, threads: 1, epochs: 0.5}"
    )
    daemon = Daemon(config)
    thread, _ = run_in_thread(daemon)
    try:
        wait_for(lambda: thread.is_alive() and "street" in daemon.pipelines
                 and daemon.pipelines["street"].stats.frames >= 5, "the daemon's first frames", 60)
        stats = daemon.pipelines["street"].stats
        frames_before = stats.frames
        done = subprocess.run(
            [sys.executable, "-m", "camd.cli", "adapt", "--config", str(config_file), "--max-minutes", "5",
             "--json"], cwd=REPO, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["train"]["batches"] > 0 and result["check_before"]["score"] is not None, result
        if result["replaced"]:  # the daemon holds the memory: the new network is for its next start
            assert result["applied"] is False and "restart" in result["why"]
        assert thread.is_alive(), "the daemon stopped during camd adapt"
        assert stats.frames > frames_before + 20, (frames_before, stats.frames)
    finally:
        daemon.stop()
        thread.join(30)


def test_nightly_schedule_waits_for_the_next_local_time() -> None:
    import datetime as dt

    from camd.adapt.schedule import seconds_until

    evening = dt.datetime(2026, 12, 7, 22, 15)
    assert seconds_until("03:30", evening) == (5 * 60 + 15) * 60  # tonight, after midnight
    assert seconds_until("22:16", evening) == 60
    assert seconds_until("22:15", evening) == 24 * 3600  # just ran: tomorrow
