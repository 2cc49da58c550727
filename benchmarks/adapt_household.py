"""camd adapt on an emulated household: learn only from what tracks give for free, report on other people.

    .venv/bin/python benchmarks/adapt_household.py [--data ../shared/data] [--models-dir var/models]
        [--epochs 4] [--threads 1] [--confirm 0] [--json]

reid/train (62 people, two cameras, camera 2 blue-tinted, 8 crops per person and camera) is split by
person: the even-indexed half is the household camd learns from, the odd half is reported on and never
trained on. The household's tracks are camera-local: one track per person and camera (its 8 crops), all
tracks of one camera at the same time (so surely different people), nobody confirmed unless --confirm N
names N of them on both cameras (as a face would). Adaptation is `camd adapt`'s own procedure
(camd/adapt/run.py `adapt_on`: a quarter of the tracks held out for the guardrail, the rest trained on,
thresholds re-derived), run on these tracks.

Reported on the other half, cross-camera (camera 1 crops query camera 2 crops), before and after, for
camd's vector (colour + greyscale halves) and each half: rank-1, mAP, the mean cosine of same-person and
of different-person pairs; and the share of same-person pairs of 4-crop track means (what the matcher
compares) above the score that 1% / 0.1% of different-person pairs reach.
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
from camd.adapt.run import adapt_on
from camd.config.schema import IdentityConfig
from camd.eval.reid import load_reid
from camd.identity.body_model import resolve_body_model
from camd.identity.calibrations import calibration_for
from camd.identity.evidence.osnet import OSNetEmbedder


def track_tar(embedder: OSNetEmbedder, data: Any, people: np.ndarray) -> dict[str, float]:
    """Cross-camera 4-crop track means (halves unit, as camd keeps them): TAR at FAR 1% and 0.1%."""
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
    scores, same = a @ b.T, who_a[:, None] == who_b[None, :]
    out = {}
    for far in (0.01, 0.001):
        threshold = np.quantile(scores[~same], 1.0 - far)
        out[f"tar_at_far_{far:g}"] = float(np.mean(scores[same] >= threshold))
    return out


def guardrail_on(data: Any, people: np.ndarray, before: Path, after: Path, threads: int) -> dict[str, Any]:
    """The guardrail's check as an installation whose people are all named by a face would run it: the
    reported-on people's 4-crop tracks on both cameras, confirmed (so the cross-camera part is measured)."""
    tracks = reid_household(data, people, confirm=len(people), crops=4)
    embedded = [embed_tracks(OSNetEmbedder(onnx, threads=threads), tracks) for onnx in (before, after)]
    results = [check(tracks, e) for e in embedded]
    decision = decide(*results)
    return {"before": results[0].as_dict(), "after": results[1].as_dict(), "replace": decision.replace,
            "reason": decision.reason}  # fmt: skip


def figures(onnx: Path, data: Any, people: np.ndarray, threads: int) -> dict[str, Any]:
    embedder = OSNetEmbedder(onnx, threads=threads)
    return {**cross_camera_similarities(embedder, data, people), "tracks": track_tar(embedder, data, people)}


def run(
    data_dir: Path, models_dir: Path, epochs: float, threads: int, confirm: int, seed: int
) -> dict[str, Any]:
    from camd.assets import ensure_asset

    reid = load_reid(data_dir / "reid" / "train")
    people = np.unique(reid.query_ids)
    learn, report_on = people[0::2], people[1::2]
    model = resolve_body_model(IdentityConfig(), models_dir, prepare=False)
    if model.kind != "osnet":
        raise SystemExit(f"OSNet not prepared in {models_dir}: camd models prepare --from ../shared/models")
    weights = ensure_asset("osnet_x0_25_msmt17", models_dir)
    before = figures(model.onnx, reid, report_on, threads)
    with tempfile.TemporaryDirectory(prefix="camd-adapt-bench-") as work:
        outcome = adapt_on(
            reid_household(reid, learn, confirm), base_weights=weights, variant="osnet_x0_25",
            current_onnx=model.onnx, current_calibration=calibration_for(model), work=Path(work),
            epochs=epochs, threads=threads, seed=seed,
        )  # fmt: skip
        if outcome.onnx is None:
            raise SystemExit(outcome.decision.reason)
        after = figures(outcome.onnx, reid, report_on, threads)
        named = guardrail_on(reid, report_on, model.onnx, outcome.onnx, threads)
    return {
        "guardrail_on_reported_people_named": named,
        "household": {"people": len(learn), "people_named": confirm, "tracks": outcome.tracks},
        "reported_on": {"people": len(report_on), "queries": int(np.isin(reid.query_ids, report_on).sum())},
        "before": before, "after": after, "guardrail": outcome.as_dict(),
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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.data, args.models_dir, args.epochs, args.threads, args.confirm, args.seed)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"household: {result['household']}")
    print(f"reported on: {result['reported_on']} (never trained on), cross-camera")
    for part in ("camd", "colour", "grey"):
        b, a = result["before"][part], result["after"][part]
        print(f"  {part:6s} " + "  ".join(f"{k} {b[k]:.3f} -> {a[k]:.3f}" for k in b))
    b, a = result["before"]["tracks"], result["after"]["tracks"]
    print("  4-crop tracks " + "  ".join(f"{k} {b[k]:.3f} -> {a[k]:.3f}" for k in b))
    guard = result["guardrail"]
    print(f"guardrail: replaced={guard['replaced']} ({guard['reason']})")
    print(f"  held-out check before {guard['check_before']}")
    print(f"  held-out check after  {guard['check_after']}")
    print(f"  training: {guard['train']}")
    print(f"  thresholds: {guard['thresholds']}")
    print(f"  impostor (mean, sd) re-derived: {result['calibration']}")
    named = result["guardrail_on_reported_people_named"]
    print(f"guardrail on the reported-on people, all named: replace={named['replace']} ({named['reason']})")
    print(f"  before {named['before']}")
    print(f"  after  {named['after']}")


if __name__ == "__main__":
    main()
