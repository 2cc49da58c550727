"""`camd eval`: the identity figures on ../shared/data, per body model (OSNet, MobileNetV2), end to end
through camd's own matcher and memory. Every threshold is measured on one half of the people and the
figures are reported on the other half (camd/eval/calibrate.py, matcher_eval.py).

- the body model in use (and whether it is a fallback);
- face verification accuracy (evaluate_faces on faces/);
- per body model: closed-set rank-1 / mAP across the two cameras and within one camera, raw and centred
  on each camera's mean; open-set true accepts at 1% and 0.1% false accepts per pair and relation; the
  real service on reid/train: enrolled people named / wrongly named, strangers named, strangers merged
  and re-linked (same and other camera); ms per crop;
- embed ms per crop for the other models.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

DEFAULT_DATA = Path("../shared/data")


BODY_MODELS = ("osnet", "mobilenetv2")


def run_eval(data: Path, models_dir: Path, body_models: tuple[str, ...] = BODY_MODELS) -> dict[str, Any]:
    from camd.config.schema import IdentityConfig
    from camd.eval import reid as ev
    from camd.eval.calibrate import run as calibrate_run
    from camd.eval.matcher_eval import reid_matcher_figures
    from camd.identity.body_model import resolve_body_model
    from camd.identity.evidence.colour import ClothingColourDescriptor
    from camd.identity.evidence.face import FaceEmbedder
    from camd.identity.evidence.pose import MoveNetPose
    from camd.identity.evidence.vehicle import VehicleAppearanceEmbedder
    from camd.identity.model_files import IdentityModelPaths

    paths = IdentityModelPaths.prepare(models_dir)
    colour = ClothingColourDescriptor()
    default = resolve_body_model(IdentityConfig(), models_dir)
    result: dict[str, Any] = {"data": str(data), "body_model_in_use": default.describe()}
    faces_root = data / "faces"
    face = FaceEmbedder(paths.face_shape, paths.face_resnet)
    if faces_root.is_dir():
        faces = ev.evaluate_faces(face, faces_root)
        result["faces"] = {k: faces[k] for k in ("people", "photos", "accuracy") if k in faces}
    reid_root = data / "reid" / "train"
    if not reid_root.is_dir():
        return result
    reid = ev.load_reid(reid_root)
    calibrations = calibrate_run(data, models_dir, body_models)
    crops = reid.query[:64]
    result["embed_ms_per_crop"] = {"clothing_colour": ev.time_embedder(colour, crops)}
    for kind in body_models:
        model = resolve_body_model(IdentityConfig(body_model=kind), models_dir)  # type: ignore[arg-type]
        if model.kind != kind:
            result[f"body:{kind}"] = {"unavailable": model.fallback_reason}
            continue
        body = model.load()
        section: dict[str, Any] = {"model": model.describe()}
        section["reid"] = body_reid_figures(reid, body, model)
        section["open_set"] = _open_set_lines(calibrations[kind])
        section["matcher"] = reid_matcher_figures(data, models_dir, kind)
        section["embed_ms_per_crop"] = ev.time_embedder(body, crops)
        result[f"body:{kind}"] = section
    pose = MoveNetPose(paths.movenet)
    vehicle = VehicleAppearanceEmbedder(paths.appearance_onnx)
    result["embed_ms_per_crop"].update({
        "vehicle_appearance": ev.time_embedder(vehicle, crops),
        "movenet_pose": _time(lambda c: pose.crop_keypoints([c]), crops[:32]),
    })  # fmt: skip
    photo = next(iter(sorted((faces_root / "tests" / "test_images").glob("obama*.jpg"))), None)
    if photo is not None:
        image = cv2.imread(str(photo))
        result["embed_ms_per_crop"]["face_detect_and_embed_photo"] = _time(face.faces, [image] * 3)
    return result


def body_reid_figures(reid: Any, body: Any, model: Any) -> dict[str, Any]:
    """Closed-set rank-1 / mAP, crop against crop: across the two cameras (camera 1 queries, camera 2
    gallery, all 62 people) and within one camera (each camera's first 4 crops of a person against its
    last 4), raw and centred on each camera's mean (learned from the other fold of people)."""
    from camd.eval.reid import rank1_and_map
    from camd.identity.body_compare import BodyComparer, CameraCrowds
    from camd.identity.calibrations import calibration_for

    vectors = {1: body.embed(reid.query), 2: body.embed(reid.gallery)}
    ids = {1: reid.query_ids, 2: reid.gallery_ids}
    people = np.unique(reid.query_ids)
    folds = [people[::2], people[1::2]]
    out: dict[str, Any] = {}
    for mode in ("raw", "centred"):
        scores: dict[str, list[dict[str, float]]] = {"cross_camera": [], "same_camera": []}
        for k in range(2):
            crowds = CameraCrowds(model.dim, min_count=1 if mode == "centred" else 10**9, camera_min_count=1)
            for camera in (1, 2):
                for v in vectors[camera][np.isin(ids[camera], folds[1 - k])]:
                    crowds.update(v, f"cam{camera}")
            comparer = BodyComparer(calibration_for(model), crowds, model.halves)
            fold = {c: np.isin(ids[c], folds[k]) for c in (1, 2)}
            prepared = {
                c: np.array([comparer.prepare(v, f"cam{c}") for v in vectors[c][fold[c]]]) for c in (1, 2)
            }
            share = comparer.calibration.colour_half
            scores["cross_camera"].append(rank1_and_map(
                _weighted(prepared[1], prepared[2], share, "cross"), ids[1][fold[1]], ids[2][fold[2]]))
            for c in (1, 2):
                first = np.zeros(fold[c].sum(), bool)
                for person in folds[k]:
                    rows = np.flatnonzero(ids[c][fold[c]] == person)
                    first[rows[:4]] = True
                in_fold = ids[c][fold[c]]
                scores["same_camera"].append(rank1_and_map(
                    _weighted(prepared[c][first], prepared[c][~first], share, "same"),
                    in_fold[first], in_fold[~first]))
        out[mode] = {
            where: {key: round(float(np.mean([v[key] for v in values])), 3) for key in ("rank1", "mAP")}
            for where, values in scores.items()
        }
    out["note"] = "31 people per gallery (a fold), averaged over the two folds"
    return out


def _weighted(a: np.ndarray, b: np.ndarray, share: dict[str, float] | None, relation: str) -> np.ndarray:
    """Pairwise scores of prepared vectors the way BodyComparer weighs the colour and grey halves."""
    if share is None:
        return a @ b.T
    half, w = a.shape[1] // 2, share[relation]
    return 2.0 * (w * a[:, :half] @ b[:, :half].T + (1 - w) * a[:, half:] @ b[:, half:].T)


def _open_set_lines(figures: dict[str, Any]) -> dict[str, Any]:
    """True accepts at 1% and 0.1% false accepts per pair, on the fold not calibrated on (mean of two)."""
    out: dict[str, Any] = {}
    for key in figures["folds"][0]:
        rows = [fold[key] for fold in figures["folds"] if key in fold]
        out[key] = {
            f"tar_at_{far}": round(float(np.mean([r[f"at_{far}"]["tar"] for r in rows])), 3)
            for far in ("0.01", "0.001")
        } | {f"far_at_{far}": round(float(np.mean([r[f"at_{far}"]["far"] for r in rows])), 4)
             for far in ("0.01", "0.001")}  # fmt: skip
    return out


def _time(action: Any, items: list[Any]) -> float:
    action(items[0])
    start = time.perf_counter()
    for item in items:
        action(item)
    return (time.perf_counter() - start) * 1000.0 / len(items)


def print_report(result: dict[str, Any], indent: int = 0) -> None:
    def fmt(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    pad = "  " * indent
    for key, value in result.items():
        if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
            print(f"{pad}{key}")
            print_report(value, indent + 1)
        elif isinstance(value, dict):
            print(f"{pad}{key:<34} " + ", ".join(f"{k} {fmt(v)}" for k, v in value.items()))
        else:
            print(f"{pad}{key:<34} {fmt(value)}")
