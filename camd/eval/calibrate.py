"""Measure a body model's thresholds on reid/train the way the matcher compares tracks, and report them
honestly: calibrated on one half of the people, scored on the other (and the other way round).

    python -m camd.eval.calibrate [--data ../shared/data] [--models-dir var/models] [--json]

Tracks are camd's: the mean of 4 crops of one person on one camera (camd keeps a track's best 5);
reid/train has 8 crops per person and camera, so each gives two tracks. Relations:
- same: two tracks on one camera (another stretch of the walk, or another person there);
- cross: tracks of the two cameras (camera 2 is blue-tinted);
- ir: a track of camera 2 turned greyscale (an IR night image) against colour tracks of either camera.
Modes: raw (a new install), centred (each camera's mean, learned from the calibration half's tracks,
subtracted: what camd does once it has seen enough sightings).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camd.identity.body_compare import (
    RELATIONS,
    BodyCalibration,
    BodyComparer,
    CameraCrowds,
    Mode,
    Relation,
)

CROPS_PER_TRACK = 4
TAIL = (0.2, 0.1, 0.05, 0.02, 0.01)  # upper-tail shares of impostor pairs the normal fit matches
REPORTED_FAR = (0.01, 0.001)  # per pair


@dataclass(frozen=True)
class Tracks:
    """Track-mean body vectors of reid/train with who, where and whether grey."""

    vectors: np.ndarray  # raw, as stored
    colours: np.ndarray  # clothing colour descriptors, track means
    person: np.ndarray
    camera: np.ndarray  # "cam1" | "cam2"
    grey: np.ndarray  # bool: an IR (greyscale) track


def reid_tracks(data: Any, body: Any, colour: Any, halves: bool) -> Tracks:
    """Two 4-crop tracks per person and camera, in colour, and camera 2's again in greyscale."""
    from camd.identity.evidence._crops import l2_normalise
    from camd.identity.evidence.osnet import greyscale

    rows: dict[str, list[Any]] = {k: [] for k in ("vectors", "colours", "person", "camera", "grey")}
    sides = (("cam1", data.query, data.query_ids), ("cam2", data.gallery, data.gallery_ids))
    for camera, crops, ids in sides:
        variants = [(False, crops)] + ([(True, [greyscale(c) for c in crops])] if camera == "cam2" else [])
        for grey, images in variants:
            vectors, colours = body.embed(images), colour.embed(images)
            for person in np.unique(ids):
                index = np.flatnonzero(ids == person)
                for start in range(0, index.size - CROPS_PER_TRACK + 1, CROPS_PER_TRACK):
                    chunk = index[start : start + CROPS_PER_TRACK]
                    rows["vectors"].append(vectors[chunk].mean(axis=0))
                    rows["colours"].append(colours[chunk].mean(axis=0))
                    rows["person"].append(int(person))
                    rows["camera"].append(camera)
                    rows["grey"].append(grey)
    vectors = np.array(rows["vectors"], np.float32)
    if halves:  # a track mean keeps each half unit length, as camd's track means do
        half = vectors.shape[1] // 2
        vectors = np.hstack([l2_normalise(vectors[:, :half]), l2_normalise(vectors[:, half:])]) / np.sqrt(2)
    else:
        vectors = l2_normalise(vectors)
    return Tracks(vectors.astype(np.float32), l2_normalise(np.array(rows["colours"])),
                  np.array(rows["person"]), np.array(rows["camera"]), np.array(rows["grey"]))  # fmt: skip


def pair_scores(
    tracks: Tracks, members: np.ndarray, comparer: BodyComparer
) -> dict[Relation, dict[str, np.ndarray]]:
    """Genuine and impostor scores per relation among `members` (track indices); IR pairs are a grey
    track against a colour one."""
    prepared = [comparer.prepare(tracks.vectors[i], str(tracks.camera[i])) for i in members]
    out: dict[Relation, dict[str, list[float]]] = {r: {"genuine": [], "impostor": []} for r in RELATIONS}
    for a in range(len(members)):
        for b in range(a + 1, len(members)):
            i, j = members[a], members[b]
            grey = int(tracks.grey[i]) + int(tracks.grey[j])
            if grey == 2 or (grey and not comparer.halves):
                continue  # two IR tracks: counted as same-camera already; no IR rule without halves
            scored = comparer.score(
                tracks.vectors[i], str(tracks.camera[i]), tracks.vectors[j], str(tracks.camera[j]),
                tracks.colours[i], tracks.colours[j], prepared_query=prepared[a],
            )  # fmt: skip
            if scored.relation == "same" and tracks.grey[i] != tracks.grey[j]:
                continue
            key = "genuine" if tracks.person[i] == tracks.person[j] else "impostor"
            out[scored.relation][key].append(scored.score)
    return {r: {k: np.array(v) for k, v in kinds.items()} for r, kinds in out.items()}


def fit_slope(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """The logistic slope (cosine per e-fold) that best separates genuine from impostor pairs by their
    excess over the threshold, P = 0.5 at the threshold, both classes weighing the same (maximum
    likelihood over a grid)."""
    best, best_loss = 0.04, np.inf
    for slope in np.arange(0.01, 0.2001, 0.005):
        loss = (np.mean(np.logaddexp(0.0, -genuine / slope)) + np.mean(np.logaddexp(0.0, impostor / slope)))
        if loss < best_loss:
            best, best_loss = float(slope), float(loss)
    return round(best, 3)


def crowds_from(tracks: Tracks, members: np.ndarray, dim: int, mode: Mode) -> CameraCrowds:
    crowds = CameraCrowds(dim, min_count=1 if mode == "centred" else 10**9, camera_min_count=1)
    for i in members:
        if not tracks.grey[i]:
            crowds.update(tracks.vectors[i], str(tracks.camera[i]))
    return crowds


def calibrate(
    tracks: Tracks,
    base: BodyCalibration,
    halves: bool,
    dim: int,
    folds: Sequence[np.ndarray],
    colour_half_choices: dict[Relation, Sequence[float]] | None = None,
) -> dict[str, Any]:
    """Per fold: thresholds from the fold's own people, scored on the other fold's. Returns the figures
    and the mean thresholds over the folds (what camd ships)."""
    result: dict[str, Any] = {"folds": []}
    chosen_half = dict(base.colour_half or {})
    if halves and colour_half_choices:
        chosen_half = _choose_halves(tracks, base, dim, folds[0], colour_half_choices)
    calibration = _with(base, colour_half=chosen_half if halves else None)
    per_fold: list[BodyCalibration] = []
    for k, calib_ids in enumerate(folds):
        test_ids = folds[1 - k]
        cal = np.flatnonzero(np.isin(tracks.person, calib_ids))
        test = np.flatnonzero(np.isin(tracks.person, test_ids))
        fold: dict[str, Any] = {}
        impostor: dict[tuple[Mode, Relation], tuple[float, float]] = {}
        slope: dict[Mode, float] = {}
        modes: tuple[Mode, ...] = ("raw", "centred")
        for mode in modes:
            crowds = crowds_from(tracks, cal, dim, mode)  # learned on the calibration half only
            comparer = BodyComparer(calibration, crowds, halves)
            on_cal, on_test = pair_scores(tracks, cal, comparer), pair_scores(tracks, test, comparer)
            excess: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
            for relation in RELATIONS:
                if on_cal[relation]["impostor"].size == 0:
                    continue
                impostor[(mode, relation)] = tail_fit(on_cal[relation]["impostor"])
                fitted = _with(calibration, impostor=impostor)
                t = fitted.score_at(mode, relation, 0.01)
                excess[0].append(on_cal[relation]["genuine"] - t)
                excess[1].append(on_cal[relation]["impostor"] - t)
                g, i = on_test[relation]["genuine"], on_test[relation]["impostor"]
                row: dict[str, Any] = {"pairs": [int(g.size), int(i.size)],
                                       "genuine_p50": round(float(np.median(g)), 3),
                                       "impostor_p50": round(float(np.median(i)), 3)}  # fmt: skip
                for far in REPORTED_FAR:
                    t = fitted.score_at(mode, relation, far)
                    row[f"at_{far:g}"] = {"threshold": round(t, 3), "tar": round(float(np.mean(g >= t)), 3),
                                          "far": round(float(np.mean(i >= t)), 4)}  # fmt: skip
                fold[f"{mode}/{relation}"] = row
            slope[mode] = fit_slope(np.concatenate(excess[0]), np.concatenate(excess[1]))
        result["folds"].append(fold)
        per_fold.append(_with(calibration, impostor=impostor, slope=slope))
    result["fold_calibrations"] = per_fold  # each measured on one fold's people only
    result["calibration"] = _with(
        calibration,
        impostor={key: tuple(round(float(np.mean([c.impostor[key][n] for c in per_fold])), 4) for n in (0, 1))
                  for key in per_fold[0].impostor},
        slope={key: round(float(np.mean([c.slope[key] for c in per_fold])), 3) for key in per_fold[0].slope},
    )  # fmt: skip
    return result


def tail_fit(impostor: np.ndarray) -> tuple[float, float]:
    """(mean, sd) of the normal distribution whose upper tail best matches the impostor scores' at
    TAIL (least squares on the quantiles): thresholds are read far out in that tail, where a handful of
    pairs is all the data there is."""
    from statistics import NormalDist

    z = np.array([NormalDist().inv_cdf(1.0 - p) for p in TAIL])
    q = np.quantile(impostor, [1.0 - p for p in TAIL])
    sd, mean = np.polyfit(z, q, 1)
    return round(float(mean), 4), round(float(sd), 4)


def _choose_halves(
    tracks: Tracks, base: BodyCalibration, dim: int, calib_ids: np.ndarray,
    choices: dict[Relation, Sequence[float]],
) -> dict[Relation, float]:  # fmt: skip
    """Per relation, the colour-half share with the most genuine pairs above the 1% impostor point
    (centred mode, on the calibration people only)."""
    members = np.flatnonzero(np.isin(tracks.person, calib_ids))
    crowds = crowds_from(tracks, members, dim, "centred")
    best: dict[Relation, float] = dict(base.colour_half or {})
    for relation, options in choices.items():
        scored = []
        for share in options:
            comparer = BodyComparer(_with(base, colour_half={**best, relation: share}), crowds, True)
            pairs = pair_scores(tracks, members, comparer)[relation]
            t = float(np.quantile(pairs["impostor"], 0.99))
            scored.append((float(np.mean(pairs["genuine"] >= t)), -abs(share - 0.5), share))
        best[relation] = max(scored)[2]
    return best


def _with(calibration: BodyCalibration, **changes: Any) -> BodyCalibration:
    from dataclasses import replace

    return replace(calibration, **changes)


def run(data: Path, models_dir: Path, models: Sequence[str] = ("osnet", "mobilenetv2")) -> dict[str, Any]:
    from camd.config.schema import IdentityConfig
    from camd.eval.reid import load_reid
    from camd.identity.body_model import resolve_body_model
    from camd.identity.calibrations import calibration_for
    from camd.identity.evidence.colour import ClothingColourDescriptor

    reid = load_reid(data / "reid" / "train")
    people = np.unique(reid.query_ids)
    folds = [people[::2], people[1::2]]
    out: dict[str, Any] = {}
    for kind in models:
        model = resolve_body_model(IdentityConfig(body_model=kind), models_dir)  # type: ignore[arg-type]
        if model.kind != kind:
            out[kind] = {"unavailable": model.fallback_reason}
            continue
        tracks = reid_tracks(reid, model.load(), ClothingColourDescriptor(), model.halves)
        choices: dict[Relation, Sequence[float]] = {"same": (1.0, 0.75, 0.5), "cross": (0.5, 0.25, 0.0)}
        figures = calibrate(tracks, calibration_for(model), model.halves, model.dim, folds, choices)
        figures["calibration"] = _jsonable(figures["calibration"])
        figures["fold_calibrations"] = [_jsonable(c) for c in figures["fold_calibrations"]]
        out[kind] = figures
    return out


def _jsonable(calibration: BodyCalibration) -> dict[str, Any]:
    def keyed(values: dict[Any, float]) -> dict[str, float]:
        return {"/".join(k) if isinstance(k, tuple) else str(k): v for k, v in values.items()}

    return {
        "impostor": {"/".join(k): list(v) for k, v in calibration.impostor.items()},
        "slope": keyed(calibration.slope),
        "colour_half": keyed(calibration.colour_half or {}),
        "clothing_colour": keyed(calibration.clothing_colour),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--model", action="append", choices=["osnet", "mobilenetv2"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.data, args.models_dir, args.model or ("osnet", "mobilenetv2"))
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for kind, figures in result.items():
        print(f"== {kind}")
        if "unavailable" in figures:
            print("  unavailable:", figures["unavailable"])
            continue
        for k, fold in enumerate(figures["folds"]):
            for key, row in fold.items():
                print(f"  fold {k} {key:16s} " + " ".join(f"{name} {value}" for name, value in row.items()))
        print("  calibration:", json.dumps(figures["calibration"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
