"""`camd eval`: the identity figures on ../shared/data, end to end through camd's own matcher.

- face verification accuracy (evaluate_faces on faces/);
- body re-ID rank-1 / mAP, camera 1 queries against the camera 2 gallery (reid/train);
- open-set TAR at 1% FAR per track (evaluate_body_folds, crowd-centred, colour 0.1);
- the real matcher on reid/train: half the people enrolled from camera 1 (one prototype per person, their
  mean), every person's camera 2 crops as one track: accepted / wrong / false-accept rates at the
  configured thresholds, and the per-track decision latency (Qdrant search + scoring);
- strangers on reid/train: how often a new stranger would merge into one of 30 in memory, and how often a
  returning one is re-linked, at the stranger_body_* settings (reid.stranger_figures);
- embed ms per crop for each model.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

DEFAULT_DATA = Path("../shared/data")


def run_eval(data: Path, models_dir: Path) -> dict[str, Any]:
    from camd.eval import reid as ev
    from camd.identity.evidence.body import BodyAppearanceEmbedder
    from camd.identity.evidence.colour import ClothingColourDescriptor
    from camd.identity.evidence.face import FaceEmbedder
    from camd.identity.evidence.pose import MoveNetPose
    from camd.identity.evidence.vehicle import VehicleAppearanceEmbedder
    from camd.identity.model_files import IdentityModelPaths

    paths = IdentityModelPaths.prepare(models_dir)
    body, colour = BodyAppearanceEmbedder(paths.appearance_onnx), ClothingColourDescriptor()
    result: dict[str, Any] = {"data": str(data)}
    faces_root = data / "faces"
    face = FaceEmbedder(paths.face_shape, paths.face_resnet)
    if faces_root.is_dir():
        faces = ev.evaluate_faces(face, faces_root)
        result["faces"] = {k: faces[k] for k in ("people", "photos", "accuracy") if k in faces}
    reid_root = data / "reid" / "train"
    if reid_root.is_dir():
        reid = ev.load_reid(reid_root)
        figures = ev.evaluate_reid(reid, [body, colour], [("fused", {body.name: 0.9, colour.name: 0.1})])
        result["body_reid"] = {
            "body": figures[body.name], "fused_0.1": figures["fused"], "identities": figures["identities"]
        }  # fmt: skip
        folds = ev.evaluate_body_folds(reid, body, colour, colour_weights=(0.1,))
        result["open_set_tar_at_1pct_far"] = {
            "per_crop_centred": folds["colour_0.1_centred"]["tar_per_crop"],
            "per_track_centred": folds["colour_0.1_centred"].get("tar_per_track"),
            "per_track_raw": folds["colour_0.1"].get("tar_per_track"),
        }
        result["matcher"] = matcher_on_reid(reid, body, colour, models_dir)
        result["strangers"] = ev.stranger_figures(reid, body, colour)
        crops = reid.query[:64]
        pose = MoveNetPose(paths.movenet)
        vehicle = VehicleAppearanceEmbedder(paths.appearance_onnx)
        result["embed_ms_per_crop"] = {
            "body_appearance": ev.time_embedder(body, crops),
            "clothing_colour": ev.time_embedder(colour, crops),
            "vehicle_appearance": ev.time_embedder(vehicle, crops),
            "movenet_pose": _time(lambda c: pose.crop_keypoints([c]), crops[:32]),
        }
        photo = next(iter(sorted((faces_root / "tests" / "test_images").glob("obama*.jpg"))), None)
        if photo is not None:
            image = cv2.imread(str(photo))
            result["embed_ms_per_crop"]["face_detect_and_embed_photo"] = _time(face.faces, [image] * 3)
    return result


def _time(action: Any, items: list[Any]) -> float:
    action(items[0])
    start = time.perf_counter()
    for item in items:
        action(item)
    return (time.perf_counter() - start) * 1000.0 / len(items)


def matcher_on_reid(reid: Any, body: Any, colour: Any, models_dir: Path) -> dict[str, Any]:
    """Enroll the first half of the identities (camera 1 mean), decide every camera 2 track."""
    from camd.config.schema import Config
    from camd.identity.matcher import Matcher, TrackVectors
    from camd.identity.memory import Memory

    app_q, app_g = body.embed(reid.query), body.embed(reid.gallery)
    col_q, col_g = colour.embed(reid.query), colour.embed(reid.gallery)
    ids = np.unique(reid.query_ids)
    enrolled = set(ids[: ids.size // 2].tolist())
    with tempfile.TemporaryDirectory(prefix="camd-eval-") as state:
        config = Config.model_validate({"state_dir": state, "models_dir": str(models_dir),
                                        "cameras": {"eval": {"url": "unused.mp4"}}})  # fmt: skip
        memory = Memory(config)
        from camd.identity.evidence.centring import RunningMean

        matcher = Matcher(memory, config.identity, RunningMean(app_q.shape[1]))
        for pid in enrolled:
            memory.save_person(
                {"person_id": f"p{pid}", "name": f"p{pid}", "role": "family", "kind": "person"}
            )
            rows = reid.query_ids == pid
            memory.add_prototype(
                f"p{pid}", {"body": _mean(app_q[rows]), "colour": _mean(col_q[rows])}, source="eval"
            )
        accepted = wrong = false_accepts = strangers = 0
        latencies = []
        for pid in ids:
            rows = reid.gallery_ids == pid
            track = TrackVectors(kind="person", body=_mean(app_g[rows]), colour=_mean(col_g[rows]))
            started = time.perf_counter()
            decision = matcher.decide(track, time.time())
            latencies.append((time.perf_counter() - started) * 1000.0)
            if pid in enrolled:
                accepted += decision.name == f"p{pid}"
                wrong += decision.name is not None and decision.name != f"p{pid}"
            else:
                strangers += 1
                false_accepts += decision.name is not None
        memory.close()
    return {
        "enrolled": len(enrolled),
        "strangers": strangers,
        "true_accept_rate": accepted / len(enrolled),
        "wrong_person_rate": wrong / len(enrolled),
        "false_accept_rate": false_accepts / max(1, strangers),
        "threshold_raw": config.identity.body_threshold,
        "decision_ms_p50": statistics.median(latencies),
        "decision_ms_max": max(latencies),
    }


def _mean(vectors: np.ndarray) -> np.ndarray:
    mean = vectors.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def print_report(result: dict[str, Any]) -> None:
    def fmt(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    for section, values in result.items():
        if isinstance(values, dict):
            print(section)
            for key, value in values.items():
                if isinstance(value, dict):
                    value = ", ".join(f"{k} {fmt(v)}" for k, v in value.items())
                print(f"  {key:<32} {fmt(value)}")
        else:
            print(f"{section}: {values}")
