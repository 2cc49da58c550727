"""camd adapt on an emulated household: learn only from what tracks give for free, report on other people.

    .venv/bin/python benchmarks/adapt_household.py [--data ../shared/data] [--models-dir var/models]
        [--epochs 4] [--threads 1] [--confirm 0] [--seed 0] [--base-share 0.5] [--variants] [--json]

reid/train (62 people, two cameras, camera 2 blue-tinted, 8 crops per person and camera) is split by
person: the even-indexed half is the household camd learns from, the odd half is reported on and never
trained on. The household's tracks are camera-local: one track per person and camera (its 8 crops), all
tracks of one camera at the same time (so surely different people), nobody confirmed unless --confirm N
names N of them on both cameras (as a face would). Adaptation is `camd adapt`'s own procedure
(camd/adapt/run.py `adapt_on`: a quarter of the tracks held out for the guardrail, the rest trained on,
thresholds re-derived), run on these tracks.

Reported on the other half, cross-camera (camera 1 crops query camera 2 crops), side by side for the
shipped network; the fine-tuned network (camd adapt before) and the fine-tuned weights averaged with the
shipped ones (camd adapt now), each serving both halves of camd's vector, or the colour half with the
shipped network on the greyscale half (what `camd adapt` puts in use): rank-1, mAP, the mean cosine of
same-person and of different-person pairs, for camd's vector and each half; and the share of same-person
pairs of 4-crop track means (what the matcher compares) above the score that 1% / 0.1% of
different-person pairs reach. The guardrail's figures are the last (averaged) run's. --variants adds a
network trained without greyscale augmentation (one more training).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from camd.adapt.check import _mean as track_mean
from camd.adapt.check import check, decide, embed_tracks
from camd.adapt.emulate import cross_camera_similarities, reid_household
from camd.adapt.run import BASE_SHARE, adapt_on
from camd.config.schema import IdentityConfig
from camd.eval.reid import load_reid
from camd.identity.body_model import resolve_body_model
from camd.identity.calibrations import calibration_for
from camd.identity.evidence.osnet import OSNetEmbedder


def track_tar(embedder: OSNetEmbedder, data: Any, people: np.ndarray) -> dict[str, dict[str, float]]:
    """Cross-camera 4-crop track means (halves unit, as camd keeps them): TAR at FAR 1% and 0.1%, for
    camd's vector and each half."""
    sides = []
    for images, ids in ((data.query, data.query_ids), (data.gallery, data.gallery_ids)):
        vectors, who = [], []
        for person in people:
            index = np.flatnonzero(ids == person)
            embedded = embedder.embed([images[i] for i in index])
            for start in range(0, len(index) - 3, 4):
                vectors.append(track_mean(embedded[start : start + 4]))
                who.append(person)
        sides.append((np.array(vectors), np.array(who)))
    (a, who_a), (b, who_b) = sides
    half, same = a.shape[1] // 2, who_a[:, None] == who_b[None, :]
    parts = {"camd": a @ b.T, "colour": 2.0 * a[:, :half] @ b[:, :half].T,
             "grey": 2.0 * a[:, half:] @ b[:, half:].T}  # fmt: skip
    out: dict[str, dict[str, float]] = {}
    for part, scores in parts.items():
        out[part] = {}
        for far in (0.01, 0.001):
            threshold = np.quantile(scores[~same], 1.0 - far)
            out[part][f"tar_at_far_{far:g}"] = float(np.mean(scores[same] >= threshold))
    return out


def guardrail_on(
    data: Any, people: np.ndarray, before: OSNetEmbedder, after: OSNetEmbedder
) -> dict[str, Any]:
    """The guardrail's check as an installation whose people are all named by a face would run it: the
    reported-on people's 4-crop tracks on both cameras, confirmed (so the cross-camera part is measured)."""
    tracks = reid_household(data, people, confirm=len(people), crops=4)
    results = [check(tracks, embed_tracks(embedder, tracks)) for embedder in (before, after)]
    decision = decide(*results)
    return {"before": results[0].as_dict(), "after": results[1].as_dict(), "replace": decision.replace,
            "reason": decision.reason}  # fmt: skip


def figures(embedder: OSNetEmbedder, data: Any, people: np.ndarray) -> dict[str, Any]:
    ranked = cross_camera_similarities(embedder, data, people)
    tar = track_tar(embedder, data, people)
    return {part: {**ranked[part], **tar[part]} for part in ranked}


def no_grey_training(
    data: Any, learn: np.ndarray, report_on: np.ndarray, weights: Path, shipped: Path, work: Path,
    epochs: float, threads: int, confirm: int, seed: int,
) -> dict[str, Any]:
    """Another way to keep the grey half's strength: a network fine-tuned without greyscale augmentation
    (on the same tracks as `adapt_on`, its held-out quarter left out), serving the colour half."""
    from camd.adapt.tracks import split_for_check
    from camd.adapt.train import export_onnx, fine_tune, load_base

    train, _ = split_for_check(reid_household(data, learn, confirm), 0.25)
    network = load_base(weights, "osnet_x0_25")
    fine_tune(network, train, epochs=epochs, threads=threads, seed=seed, grey_share=0.0)
    export_onnx(network, "osnet_x0_25", work / "colour_only.onnx")
    hybrid = OSNetEmbedder(work / "colour_only.onnx", threads=threads, grey_onnx=shipped)
    return {"fine-tuned without grey, colour+shipped grey": figures(hybrid, data, report_on)}


def run(
    data_dir: Path,
    models_dir: Path,
    epochs: float,
    threads: int,
    confirm: int,
    seed: int,
    with_variants: bool = False,
    average: float = BASE_SHARE,
) -> dict[str, Any]:
    from camd.assets import ensure_asset

    reid = load_reid(data_dir / "reid" / "train")
    people = np.unique(reid.query_ids)
    learn, report_on = people[0::2], people[1::2]
    model = resolve_body_model(IdentityConfig(), models_dir, prepare=False)
    if model.kind != "osnet":
        raise SystemExit(f"OSNet not prepared in {models_dir}: camd models prepare --from ../shared/models")
    weights = ensure_asset("osnet_x0_25_msmt17", models_dir)
    shipped = OSNetEmbedder(model.onnx, threads=threads)
    table = {"shipped": figures(shipped, reid, report_on)}
    named = {}
    with tempfile.TemporaryDirectory(prefix="camd-adapt-bench-") as work:
        # camd adapt's own procedure, twice from the same seed (the training repeats exactly): the
        # fine-tuned weights as they are (base_share 0, camd adapt before), then averaged with the shipped
        # ones (camd adapt now); each network serving both halves, and the colour half only.
        for base_share, how in ((0.0, "fine-tuned"), (average, f"averaged {average:g}")):
            folder = Path(work) / how
            folder.mkdir()
            outcome = adapt_on(
                reid_household(reid, learn, confirm), base_weights=weights, variant="osnet_x0_25",
                current_onnx=model.onnx, current_calibration=calibration_for(model), work=folder,
                grey_onnx=model.onnx, epochs=epochs, threads=threads, seed=seed, base_share=base_share,
            )  # fmt: skip
            if outcome.onnx is None:
                raise SystemExit(outcome.decision.reason)
            both = OSNetEmbedder(outcome.onnx, threads=threads)
            hybrid = OSNetEmbedder(outcome.onnx, threads=threads, grey_onnx=model.onnx)
            table[f"{how}, both halves"] = figures(both, reid, report_on)
            table[f"{how}, colour+shipped grey"] = figures(hybrid, reid, report_on)
            named[f"{how}, both halves"] = guardrail_on(reid, report_on, shipped, both)
            named[f"{how}, colour+shipped grey"] = guardrail_on(reid, report_on, shipped, hybrid)
        if with_variants:
            table.update(no_grey_training(reid, learn, report_on, weights, model.onnx, Path(work), epochs,
                                          threads, confirm, seed))  # fmt: skip
    return {
        "guardrail_on_reported_people_named": named,
        "household": {"people": len(learn), "people_named": confirm, "tracks": outcome.tracks},
        "reported_on": {"people": len(report_on), "queries": int(np.isin(reid.query_ids, report_on).sum())},
        "table": table, "guardrail": outcome.as_dict(),
        "calibration": None if outcome.calibration is None else {
            "/".join(k): v for k, v in outcome.calibration.impostor.items()},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--confirm", type=int, default=0, help="household people named on both cameras")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also train a network without greyscale "
        "augmentation, and average adapted and shipped weights (two more trainings)",
    )
    parser.add_argument("--base-share", type=float, default=BASE_SHARE, help="the shipped weights' share "
                        "in the averaged network (camd adapt: %(default)s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(
        args.data, args.models_dir, args.epochs, args.threads, args.confirm, args.seed, args.variants,
        args.base_share,
    )
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"household: {result['household']}")
    print(f"reported on: {result['reported_on']} (never trained on), cross-camera")
    keys = ("rank1", "map", "tar_at_far_0.01", "tar_at_far_0.001")
    print("| network | part | rank-1 | mAP | TAR @1% FAR | TAR @0.1% FAR |\n|---|---|---|---|---|---|")
    for name, parts in result["table"].items():
        for part in ("camd", "colour", "grey"):
            print(f"| {name} | {part} | " + " | ".join(f"{parts[part][k]:.3f}" for k in keys) + " |")
    guard = result["guardrail"]
    print(f"guardrail: replaced={guard['replaced']} ({guard['reason']})")
    print(f"  held-out check before {guard['check_before']}")
    print(f"  held-out check after  {guard['check_after']}")
    print(f"  training: {guard['train']}")
    print(f"  thresholds: {guard['thresholds']}")
    print(f"  impostor (mean, sd) re-derived: {result['calibration']}")
    for name, named in result["guardrail_on_reported_people_named"].items():
        print(
            f"guardrail on the reported-on people, all named, {name}: replace={named['replace']} "
            f"({named['reason']})"
        )
        print(f"  before {named['before']}")
        print(f"  after  {named['after']}")


if __name__ == "__main__":
    main()
