"""camd adapt on an emulated household: learn only from what tracks give for free, report on other people.

    .venv/bin/python benchmarks/adapt_household.py [--data ../shared/data] [--models-dir var/models]
        [--epochs 3] [--threads 2] [--confirm 0] [--json]

reid/train (62 people, two cameras, camera 2 blue-tinted, 8 crops per person and camera) is split by
person: the even-indexed half is the household camd learns from, the odd half is reported on and never
trained on. The household's tracks are camera-local: one track per person and camera (its 8 crops), all
tracks of one camera at the same time (so they are surely different people), nobody confirmed unless
--confirm N names N of them on both cameras (as a face would). That is `camd adapt`'s own procedure
(camd/adapt/run.py `adapt_on`: a quarter of the tracks held out for the guardrail, the rest trained on,
thresholds re-derived), run on these tracks.

Reported on the other half, cross-camera (camera 1 crops query camera 2 crops), per crop: rank-1 and mAP
of the network itself (colour, 512-d) and of camd's vector (colour + greyscale halves), before and after.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from camd.adapt.run import adapt_on
from camd.adapt.tracks import AdaptTrack
from camd.config.schema import IdentityConfig
from camd.eval.reid import load_reid, rank1_and_map
from camd.identity.body_model import resolve_body_model
from camd.identity.calibrations import calibration_for
from camd.identity.evidence.osnet import OSNetEmbedder


def household(data: Any, people: np.ndarray, confirm: int = 0) -> list[AdaptTrack]:
    tracks = []
    named = set(people[:confirm].tolist())
    for camera, crops, ids in (("cam1", data.query, data.query_ids), ("cam2", data.gallery, data.gallery_ids)):
        for person in people:
            own = tuple(crops[i] for i in np.flatnonzero(ids == person))
            tracks.append(AdaptTrack(f"{person}-{camera}", camera, 0.0, 60.0, own,
                                     f"p{person}" if person in named else None))  # fmt: skip
    return tracks


def cross_camera(embedder: OSNetEmbedder, data: Any, people: np.ndarray) -> dict[str, float]:
    q = np.flatnonzero(np.isin(data.query_ids, people))
    g = np.flatnonzero(np.isin(data.gallery_ids, people))
    query = embedder.embed([data.query[i] for i in q])
    gallery = embedder.embed([data.gallery[i] for i in g])
    half = query.shape[1] // 2
    colour = rank1_and_map(query[:, :half] @ gallery[:, :half].T, data.query_ids[q], data.gallery_ids[g])
    grey = rank1_and_map(query[:, half:] @ gallery[:, half:].T, data.query_ids[q], data.gallery_ids[g])
    both = rank1_and_map(query @ gallery.T, data.query_ids[q], data.gallery_ids[g])
    return {"rank1_colour": colour["rank1"], "map_colour": colour["mAP"],
            "rank1_grey": grey["rank1"], "map_grey": grey["mAP"],
            "rank1_camd": both["rank1"], "map_camd": both["mAP"]}  # fmt: skip


def run(data_dir: Path, models_dir: Path, epochs: float, threads: int, confirm: int, seed: int) -> dict[str, Any]:
    reid = load_reid(data_dir / "reid" / "train")
    people = np.unique(reid.query_ids)
    learn, report_on = people[0::2], people[1::2]
    model = resolve_body_model(IdentityConfig(), models_dir, prepare=False)
    if model.kind != "osnet":
        raise SystemExit(f"OSNet is not prepared in {models_dir}: camd models prepare --from ../shared/models")
    weights = models_dir / "osnet_x0_25_msmt17" / "osnet_x0_25_msmt17.pth"
    if not weights.is_file():
        from camd.assets import ensure_asset

        weights = ensure_asset("osnet_x0_25_msmt17", models_dir)
    before = cross_camera(OSNetEmbedder(model.onnx, threads=threads), reid, report_on)
    with tempfile.TemporaryDirectory(prefix="camd-adapt-bench-") as work:
        outcome = adapt_on(
            household(reid, learn, confirm), base_weights=weights, variant="osnet_x0_25",
            current_onnx=model.onnx, current_calibration=calibration_for(model), work=Path(work),
            epochs=epochs, threads=threads, seed=seed,
        )  # fmt: skip
        assert outcome.onnx is not None, outcome.decision.reason
        after = cross_camera(OSNetEmbedder(outcome.onnx, threads=threads), reid, report_on)
    return {
        "household": {"people": len(learn), "confirmed": confirm, **outcome.tracks},
        "reported_on": {"people": len(report_on), "queries": int(np.isin(reid.query_ids, report_on).sum())},
        "before": before, "after": after, "guardrail": outcome.as_dict(),
        "calibration": None if outcome.calibration is None else {
            "/".join(k): v for k, v in outcome.calibration.impostor.items()},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--confirm", type=int, default=0, help="household people named on both cameras")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.data, args.models_dir, args.epochs, args.threads, args.confirm, args.seed)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"household: {result['household']}")
    print(f"reported on: {result['reported_on']} (never trained on)")
    for key in result["before"]:
        print(f"  {key:13s} before {result['before'][key]:.3f}  after {result['after'][key]:.3f}")
    guard = result["guardrail"]
    print(f"guardrail: replaced={guard['replaced']} ({guard['reason']})")
    print(f"  held-out check before {guard['check_before']}")
    print(f"  held-out check after  {guard['check_after']}")
    print(f"  training: {guard['train']}")
    print(f"  thresholds: {guard['thresholds']}")


if __name__ == "__main__":
    main()
