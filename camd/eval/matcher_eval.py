"""Identity end to end through camd's own service on reid/train: enrolled people named, wrongly named,
strangers taken for someone, and strangers merged or re-linked, per body model.

Every track goes through `IdentityService.finalise`, the daemon's own path at a track's end: the real
matcher, the real memory (Qdrant local store and sighting log), stranger ids assigned and learned, crowd
means updated. Tracks are 4 crops of one person on one camera (reid/train has 8 a camera: two tracks).

Honest by construction: two folds of 31 people; a fold is decided with the thresholds measured on the
other fold (camd/eval/calibrate.py) and, in centred mode, with camera means learned from the other fold's
tracks only (the crowd an install has seen before these people came). Within a fold, half the people are
enrolled from camera 1 (one track, as `camd enroll --sighting` does), the others are strangers.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from camd.eval.calibrate import Tracks, calibrate

T0 = 1_800_000_000.0  # a fixed clock: sightings a minute apart, all within one day
EVAL_DRAWS = 3  # `camd eval`: random draws per fold
LINKING = ("new_merged", "relink_same_camera", "relink_other_camera", "linked_to_someone_else")


@dataclass(frozen=True)
class Outcome:
    named_right: int = 0
    named_wrong: int = 0
    enrolled_missed: int = 0
    strangers_named: int = 0
    strangers: int = 0

    @property
    def enrolled(self) -> int:
        return self.named_right + self.named_wrong + self.enrolled_missed

    def rates(self) -> dict[str, float | int]:
        return {
            "enrolled_tracks": self.enrolled, "named_right": _rate(self.named_right, self.enrolled),
            "named_wrong": _rate(self.named_wrong, self.enrolled), "stranger_tracks": self.strangers,
            "strangers_named": _rate(self.strangers_named, self.strangers),
        }  # fmt: skip


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 3) if whole else float("nan")


def household_service(state: Path, models_dir: Path, model: Any, calibration: Any, crowd_tracks: list[int],
                      tracks: Tracks, mode: str) -> Any:  # fmt: skip
    from camd.config.schema import Config
    from camd.identity.body_compare import BodyComparer, CameraCrowds
    from camd.identity.service import IdentityService

    config = Config.model_validate({
        "state_dir": str(state), "models_dir": str(models_dir), "cameras": {"cam1": {"url": "x.mp4"}},
        "identity": {"body_model": model.kind, "face": False, "gait": False, "vehicle": False},
    })  # fmt: skip
    service = IdentityService(config, load_extractors=False)
    crowds = CameraCrowds(model.dim, min_count=1 if mode == "centred" else 10**9)
    for i in crowd_tracks:
        crowds.update(tracks.vectors[i], str(tracks.camera[i]))
    service.crowd = crowds
    service.matcher.body = BodyComparer(calibration, crowds, model.halves)
    return service


def _evidence(tracks: Tracks, i: int) -> Any:
    from camd.identity.track import KeptCrop, TrackEvidence

    evidence = TrackEvidence(kind="person", best_k=5, camera=str(tracks.camera[i]), frames=20)
    for _ in range(4):  # a 4-crop track (its mean is the stored track vector)
        evidence.crops.append(KeptCrop(1.0, np.zeros((8, 4, 3), np.uint8), (0, 0, 4, 8), 0.0,
                                       tracks.vectors[i], tracks.colours[i]))  # fmt: skip
    return evidence


def _after(event_id: str, camera: str, at: float) -> Any:
    """A finished track's last snapshot, as the events stage hands it to identity."""
    from camd.types import TrackSnapshot

    return TrackSnapshot(
        event_id=event_id, camera=camera, track_id=1, label="person", score=0.9, top_score=0.9,
        box=(0.0, 0.0, 40.0, 120.0), frame_size=(640, 360), start_time=at - 5.0, frame_time=at, frames=20,
        end_time=at,
    )


def matcher_figures(tracks: Tracks, model: Any, models_dir: Path, folds: list[np.ndarray],
                    base_calibration: Any, seed: int = 0, household: int | None = None,
                    rounds: int = 1) -> dict[str, Any]:  # fmt: skip
    """Enrolled / stranger decisions and stranger linking, per mode (raw: a new install; centred), per
    relation of the decided tracks to the enrollment (same camera, the other camera). `household`:
    people enrolled per round (default: half the fold), the rest of the fold are strangers."""
    rng = np.random.default_rng(seed)
    colour = ~tracks.grey
    out: dict[str, Any] = {}
    # Fold k is decided with what was measured on the other fold's people only.
    measured = calibrate(tracks, base_calibration, model.halves, model.dim, folds)["fold_calibrations"]
    calibrations = [measured[1 - k] for k in range(2)]
    for mode in ("raw", "centred"):
        totals = {"same": Outcome(), "cross": Outcome()}
        linking: dict[str, list[bool]] = {key: [] for key in LINKING}
        latencies: list[float] = []
        for k, fold in [(k, f) for k, f in enumerate(folds) for _ in range(rounds)]:
            other = np.flatnonzero(np.isin(tracks.person, folds[1 - k]) & colour)
            people = rng.permutation(fold)
            enrolled = set(people[: household or people.size // 2].tolist())
            members = np.flatnonzero(np.isin(tracks.person, fold) & colour)

            def open_service(state: str, k: int = k, other: np.ndarray = other, mode: str = mode) -> Any:
                return household_service(
                    Path(state), models_dir, model, calibrations[k], list(other), tracks, mode
                )

            for relation in ("same", "cross"):
                with tempfile.TemporaryDirectory(prefix="camd-eval-") as state:
                    service = open_service(state)
                    try:
                        outcome, ms = _enrolled_round(service, tracks, members, enrolled, relation)
                    finally:
                        service.close()
                latencies += ms
                totals[relation] = _add(totals[relation], outcome)
            with tempfile.TemporaryDirectory(prefix="camd-eval-") as state:
                service = open_service(state)
                try:
                    for key, values in stranger_round(service, tracks, members, rng).items():
                        linking[key] += values
                finally:
                    service.close()
        out[mode] = {
            "same_camera": totals["same"].rates(), "other_camera": totals["cross"].rates(),
            "strangers": {key: _rate(sum(v), len(v)) for key, v in linking.items()},
            "decision_ms_p50": round(float(np.median(latencies)), 2) if latencies else None,
        }
    return out


def _add(a: Outcome, b: Outcome) -> Outcome:
    return Outcome(*(x + y for x, y in zip(vars(a).values(), vars(b).values(), strict=True)))


def _enrolled_round(service: Any, tracks: Tracks, members: np.ndarray, enrolled: set[int],
                    relation: str) -> tuple[Outcome, list[float]]:  # fmt: skip
    """Enroll each enrolled person from their first camera-1 track; decide every track of the fold on
    camera 1 (same) or camera 2 (cross), except the enrollment tracks themselves."""
    memory = service.memory
    used = set()
    for person in sorted(enrolled):
        first = next(i for i in members if tracks.person[i] == person and tracks.camera[i] == "cam1")
        used.add(int(first))
        memory.save_person({"person_id": f"p{person}", "name": f"p{person}", "role": "family",
                            "kind": "person", "created": T0})  # fmt: skip
        memory.add_prototype(f"p{person}", {"body": tracks.vectors[first], "colour": tracks.colours[first]},
                             source="eval", camera="cam1")  # fmt: skip
    wanted = "cam1" if relation == "same" else "cam2"
    counts = {"named_right": 0, "named_wrong": 0, "enrolled_missed": 0, "strangers_named": 0, "strangers": 0}
    latencies = []
    for n, i in enumerate(m for m in members if tracks.camera[m] == wanted and int(m) not in used):
        at = T0 + 60.0 * n
        started = time.perf_counter()
        decision = service.matcher.decide(_evidence(tracks, i).vectors(), at)
        latencies.append((time.perf_counter() - started) * 1000.0)
        person = int(tracks.person[i])
        if person in enrolled:
            key = ("named_right" if decision.name == f"p{person}" else
                   "enrolled_missed" if decision.name is None else "named_wrong")  # fmt: skip
            counts[key] += 1
        else:
            counts["strangers"] += 1
            counts["strangers_named"] += decision.name is not None
    return Outcome(**counts), latencies


def stranger_round(service: Any, tracks: Tracks, members: np.ndarray,
                   rng: np.random.Generator) -> dict[str, list[bool]]:  # fmt: skip
    """Nobody enrolled: every track of the fold arrives in a random order, a minute apart, through
    `finalise` (ids assigned and learned). Afterwards: was a person's first track merged into an earlier
    stranger (a wrong merge), and were their later tracks re-linked to their own earlier id?"""
    ids: dict[int, str | None] = {}
    for n, i in enumerate(rng.permutation(members)):
        at = T0 + 60.0 * n
        decision = service.finalise(_evidence(tracks, int(i)), _after(f"t{n}", str(tracks.camera[i]), at), at)
        ids[int(i)] = decision.global_id if decision is not None else None
    owner: dict[str, int] = {}  # the person whose track first took each id
    seen: dict[int, list[int]] = {}
    out: dict[str, list[bool]] = {key: [] for key in LINKING}
    order = sorted(ids, key=lambda i: list(ids).index(i))
    for i in order:
        person, gid = int(tracks.person[i]), ids[i]
        earlier = seen.setdefault(person, [])
        if not earlier:
            out["new_merged"].append(gid in owner and owner[gid] != person)
        else:
            same_camera = any(tracks.camera[e] == tracks.camera[i] for e in earlier)
            own_ids = {ids[e] for e in earlier}
            out["relink_same_camera" if same_camera else "relink_other_camera"].append(gid in own_ids)
            out["linked_to_someone_else"].append(gid in owner and owner[gid] != person)
        if gid is not None:
            owner.setdefault(gid, person)
        earlier.append(i)
    return out


def reid_matcher_figures(data: Path, models_dir: Path, kind: str) -> dict[str, Any]:
    """`camd eval`'s matcher lines for one body model (or why it is unavailable)."""
    from camd.config.schema import IdentityConfig
    from camd.eval.calibrate import reid_tracks
    from camd.eval.reid import load_reid
    from camd.identity.body_model import resolve_body_model
    from camd.identity.calibrations import calibration_for
    from camd.identity.evidence.colour import ClothingColourDescriptor

    model = resolve_body_model(IdentityConfig(body_model=kind), models_dir)  # type: ignore[arg-type]
    if model.kind != kind:
        return {"unavailable": model.fallback_reason}
    reid = load_reid(data / "reid" / "train")
    tracks = reid_tracks(reid, model.load(), ClothingColourDescriptor(), model.halves)
    people = np.unique(reid.query_ids)
    folds = [people[::2], people[1::2]]
    base = replace(calibration_for(model))
    # Three draws a fold (who is enrolled, the order strangers arrive in): one draw flattered the
    # stranger merges (1.6 % against 3-8 % over three, docs/identity.md).
    return {"draws_per_fold": EVAL_DRAWS,
            **matcher_figures(tracks, model, models_dir, folds, base, rounds=EVAL_DRAWS)}
