"""A household emulated from reid/train for the adaptation benchmark and tests: what `camd adapt` would
read from an installation whose cameras saw these people, with nothing but camera-local signals."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from camd.adapt.tracks import AdaptTrack


def reid_household(
    data: Any, people: np.ndarray, confirm: int = 0, crops: int | None = None
) -> list[AdaptTrack]:
    """One track per person and camera (their crops there, at most `crops`), all tracks of one camera at
    the same time (so surely different people); the first `confirm` people named on both cameras (as a
    face would name them), the others unconfirmed."""
    tracks = []
    named = {int(p) for p in people[:confirm]}
    sides = (("cam1", data.query, data.query_ids), ("cam2", data.gallery, data.gallery_ids))
    for camera, images, ids in sides:
        for person in people:
            own = tuple(images[i] for i in np.flatnonzero(ids == person)[:crops])
            name = f"p{int(person)}" if int(person) in named else None
            tracks.append(AdaptTrack(f"{int(person)}-{camera}", camera, 0.0, 60.0, own, name))
    return tracks


def cross_camera_similarities(embedder: Any, data: Any, people: np.ndarray) -> dict[str, dict[str, float]]:
    """Per vector part (camd's whole vector, its colour half, its greyscale half): the mean cosine of
    same-person and of different-person crop pairs across the two cameras, the AUC of the two, and rank-1 /
    mAP of camera 1 crops querying camera 2 crops."""
    from camd.eval.reid import rank1_and_map

    q = np.flatnonzero(np.isin(data.query_ids, people))
    g = np.flatnonzero(np.isin(data.gallery_ids, people))
    query = embedder.embed([data.query[i] for i in q])
    gallery = embedder.embed([data.gallery[i] for i in g])
    same = data.query_ids[q][:, None] == data.gallery_ids[g][None, :]
    half = query.shape[1] // 2
    parts = {"camd": query @ gallery.T, "colour": 2.0 * query[:, :half] @ gallery[:, :half].T,
             "grey": 2.0 * query[:, half:] @ gallery[:, half:].T}  # fmt: skip
    out = {}
    for name, scores in parts.items():
        ranked = rank1_and_map(scores, data.query_ids[q], data.gallery_ids[g])
        impostors = np.sort(scores[~same])
        # AUC: the chance that a same-person pair scores above a different-person pair
        auc = float(np.mean(np.searchsorted(impostors, scores[same]) / impostors.size))
        out[name] = {"genuine": float(scores[same].mean()), "impostor": float(scores[~same].mean()),
                     "auc": auc, "rank1": ranked["rank1"], "map": ranked["mAP"]}  # fmt: skip
    return out


def log_household(config: Any, data: Any, people: np.ndarray, now: float) -> int:
    """Write the household's tracks into an installation's sighting log with their crops on disk, as the
    daemon would have logged them (person sightings, kept crops); returns how many."""
    from camd.identity.crops import CropStore
    from camd.identity.sightings import SightingLog

    crops, log = CropStore(config.crops_path), SightingLog(config.sightings_path)
    count = 0
    try:
        for track in reid_household(data, people):
            saved = (crops.save(f"{track.key}~{k}", image, now) for k, image in enumerate(track.crops))
            paths = [str(s.path) for s in saved if s is not None]
            log.add(track.key, {}, {"camera": track.camera, "label": "person", "start_time": now - 60,
                                    "end_time": now, "crop": paths[0], "crops": paths}, "any")  # fmt: skip
            count += 1
    finally:
        log.close()
    return count


def household_install(folder: Path, models_dir: Path, clip: Path, data: Any, adapt: str) -> tuple[Path, Any]:
    """An installation in `folder` whose one camera (`street`) plays `clip` live, looped, and whose
    sighting log already holds 16 reid/train people's tracks (32, with kept crops): what a daemon and
    `camd adapt` beside it work on. `adapt`: the config's adapt block, inline YAML. Returns the config
    file and the loaded config."""
    from camd.config.loader import load_config

    config_file = folder / "camd.yaml"
    config_file.write_text(
        f"state_dir: {folder / 'state'}\nmodels_dir: {models_dir.resolve()}\nmqtt: {{enabled: false}}\n"
        f"adapt: {adapt}\n"
        f"cameras:\n  street: {{url: {clip.resolve()}, loop: true, realtime: true}}\n"
    )
    config = load_config(config_file)
    log_household(config, data, np.unique(data.query_ids)[:16], time.time())
    return config_file, config
