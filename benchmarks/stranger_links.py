"""Stranger linking on reid/train through camd's own service: new strangers merged, returns re-linked.

Nobody is enrolled. Each round, the 4-crop tracks of some people of one fold (two tracks per person and
camera, camera 2 blue-tinted) arrive a minute apart in a random order through `IdentityService.finalise`
(ids assigned and looks learned, as in the daemon). A fold is decided with the thresholds and camera means
measured on the other fold's people (camd/eval/calibrate.py), so no figure comes from data its
thresholds were fitted on. Prints, per link rule, fold 0 / fold 1: the share of new strangers merged into
someone else, of returns re-linked on the same / the other camera, and of returns linked to someone else.

`--people 8` emulates a household-sized day (8 strangers a round) instead of a whole fold (31 at once).
The rules compared: the shipped one (`BodyCalibration.false_merge_rate` over the live looks, capped at
`stranger_pair_far`), the fixed per-pair rule it replaced, and a few stricter variants.

    .venv/bin/python benchmarks/stranger_links.py [--body-model osnet] [--mode centred] [--people 8]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from camd.config.schema import IdentityConfig
from camd.eval.calibrate import calibrate, reid_tracks
from camd.eval.matcher_eval import LINKING, household_service, stranger_round
from camd.eval.reid import load_reid
from camd.identity.body_model import resolve_body_model
from camd.identity.calibrations import calibration_for
from camd.identity.evidence.colour import ClothingColourDescriptor

REPO = Path(__file__).resolve().parents[1]
# name -> BodyCalibration fields (and `margin`: the stranger margin of the mode under test)
RULES: dict[str, dict[str, Any]] = {
    "shipped: 1% over live looks, cap 0.2%": {},
    "before: 0.2% per pair": {"false_merge_rate": None},
    "0.5% over live looks": {"false_merge_rate": 0.005},
    "before, margin 0.24": {"false_merge_rate": None, "margin": 0.24},
}


def run_rule(tracks: Any, model: Any, models_dir: Path, folds: list[np.ndarray], measured: list[Any],
             rule: dict[str, Any], mode: str, draws: int, people: int) -> list[dict[str, float]]:  # fmt: skip
    rule = dict(rule)
    margin = rule.pop("margin", None)
    colour = ~tracks.grey
    out = []
    for k in range(2):
        calibration = replace(measured[1 - k], **rule)
        if margin is not None:
            calibration = replace(calibration, stranger_margin={**calibration.stranger_margin, mode: margin})
        crowd = np.flatnonzero(np.isin(tracks.person, folds[1 - k]) & colour)
        rng = np.random.default_rng(100 + k)  # the same arrivals for every rule
        linking: dict[str, list[bool]] = {key: [] for key in LINKING}
        for _ in range(draws):
            chosen = rng.choice(folds[k], people, replace=False) if people else folds[k]
            members = np.flatnonzero(np.isin(tracks.person, chosen) & colour)
            with tempfile.TemporaryDirectory(prefix="camd-links-") as state:
                service = household_service(
                    Path(state), models_dir, model, calibration, list(crowd), tracks, mode
                )
                try:
                    for key, values in stranger_round(service, tracks, members, rng).items():
                        linking[key] += values
                finally:
                    service.close()
        out.append({key: 100.0 * float(np.mean(v)) if v else float("nan") for key, v in linking.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--body-model", default="osnet", choices=["osnet", "mobilenetv2"])
    parser.add_argument("--mode", default="centred", choices=["centred", "raw"])
    parser.add_argument("--draws", type=int, default=4, help="random rounds per fold")
    parser.add_argument("--people", type=int, default=0, help="strangers a round (0: the whole fold)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    args = parser.parse_args()
    model = resolve_body_model(IdentityConfig(body_model=args.body_model), args.models_dir)
    if model.kind != args.body_model:
        raise SystemExit(f"{args.body_model} is not available: {model.fallback_reason}")
    reid = load_reid(args.data / "reid" / "train")
    tracks = reid_tracks(reid, model.load(), ClothingColourDescriptor(), model.halves)
    everyone = np.unique(reid.query_ids)
    folds = [everyone[::2], everyone[1::2]]
    measured = calibrate(tracks, calibration_for(model), model.halves, model.dim, folds)["fold_calibrations"]
    print(f"{args.body_model} {args.mode}, {args.draws} draws a fold, "
          f"{args.people or 'all'} strangers a round; fold 0 / fold 1, %")  # fmt: skip
    for name, rule in RULES.items():
        folds_out = run_rule(tracks, model, args.models_dir, folds, measured, rule, args.mode, args.draws,
                             args.people)  # fmt: skip
        cells = " | ".join(f"{key} {folds_out[0][key]:.1f} / {folds_out[1][key]:.1f}" for key in LINKING)
        print(f"{name:40s} {cells}", flush=True)


if __name__ == "__main__":
    main()
