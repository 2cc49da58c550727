"""Open-set decision for one track: who is it, how sure, and on what evidence.

Modalities are combined by their measured strength (docs/identity.md, "Matcher"):
- face: a dlib distance below `face_distance` (0.55; same person max 0.43, different min 0.78 measured)
  decides; a clear face far from a person's face prototypes vetoes that person whatever the body says;
- body: the track's mean appearance against each prototype, fused cosine (0.9 appearance, centred on the
  crowd once `RunningMean` has seen enough sightings, + 0.1 clothing colour); the threshold is the measured
  ~1% false-accept point per track (0.70 raw, 0.32 centred); it carries identity without a face;
- gait/body shape: AUC 0.72 only, so it moves the body's log-odds by at most +-GAIT_LOGIT, never decides.
Negative prototypes ("not NAME") veto NAME when the track is at least as close to them as to NAME's own.

Confidence: each modality's score is mapped to a probability by a logistic curve that is 0.5 at the
modality's threshold, with a slope set from the measured distributions (face: 0.04 distance per e-fold,
so the measured same-person median 0.39 gives 0.98 and the different-person minimum 0.78 gives 0.003;
body: 0.04 cosine per e-fold raw, 0.06 centred). Face and body are combined by adding log-odds (body at
half weight when a face is present). This is calibrated on the small public sets in docs/identity.md, not
on home-camera footage: treat 0.5-0.8 as "likely", above 0.9 as "confident".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from camd.config.models import IdentityConfig
from camd.identity.evidence.centring import RunningMean
from camd.identity.evidence.fusion import BODY_COLOUR_WEIGHT
from camd.identity.evidence.gait import GaitSignature, signature_distance
from camd.identity.memory import PROTOTYPES, Hit, Memory
from camd.types import Identity

FACE_SLOPE = 0.04
BODY_SLOPE_RAW = 0.04
BODY_SLOPE_CENTRED = 0.06
VEHICLE_SLOPE = 0.04
# A face this far from every prototype of a person is clearly someone else (different-person min 0.78).
FACE_VETO_DISTANCE = 0.70
# Gait shifts the log-odds by at most this much: distance <= 1.0 (same-walker median) adds it,
# >= 1.8 removes it (between them, linearly).
GAIT_LOGIT = 0.4
GAIT_SAME, GAIT_DIFFERENT = 1.0, 1.8
# Confidence at which a known identity is published before the track ends.
EARLY_CONFIDENCE = 0.7
CANDIDATES = 64
BODY_AGAINST_FACE = -1.0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


@dataclass
class TrackVectors:
    """What a track offers the matcher: any of these may be missing."""

    kind: str  # "person" | "vehicle"
    faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 128), np.float32))
    body: np.ndarray | None = None  # (1280,) raw mean appearance, unit length
    colour: np.ndarray | None = None  # (72,)
    vehicle: np.ndarray | None = None  # (196,)
    shape: GaitSignature | None = None
    body_crops: int = 0

    def stored_vectors(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if self.faces.size:
            out["face"] = self.faces.mean(axis=0)
        for name in ("body", "colour", "vehicle"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass
class Decision:
    name: str | None  # a known person's or vehicle's name
    identity_class: str  # family | visitor | stranger | known_vehicle | unknown_vehicle
    confidence: float
    evidence: dict[str, float | None]
    global_id: str | None  # name, unknown-N or vehicle-N; None for a stranger not yet given an id
    person_id: str | None  # whose memory this track joins (known or a matched stranger)
    early: bool = False  # enough evidence to publish before the track ends
    # The body match came from a same-day prototype: such a decision must not learn another one, or a
    # look-alike could keep a wrong same-day prototype alive forever.
    via_same_day: bool = False

    def identity(self) -> Identity:
        return Identity(
            name=self.name,
            identity_class=self.identity_class,
            confidence=round(self.confidence, 3),
            evidence={k: (None if v is None else round(v, 3)) for k, v in self.evidence.items()},
            global_id=self.global_id,
        )

    def to_dict(self) -> dict[str, Any]:
        identity = self.identity()
        return {
            "identity": identity.name, "identity_class": identity.identity_class,
            "confidence": identity.confidence, "evidence": identity.evidence,
            "global_id": identity.global_id, "person_id": self.person_id,
        }  # fmt: skip


@dataclass
class _Scores:
    face: float | None = None  # best distance, positive prototypes
    body: float | None = None  # best fused cosine
    body_same_day: bool = False  # the best body prototype is a same-day one
    vehicle: float | None = None
    gait: float | None = None  # best signature distance
    neg_face: float | None = None
    neg_body: float | None = None
    neg_vehicle: float | None = None
    has_face_prototypes: bool = False


class Matcher:
    def __init__(self, memory: Memory, config: IdentityConfig, crowd: RunningMean) -> None:
        self.memory, self.config, self.crowd = memory, config, crowd

    @property
    def centred(self) -> bool:
        return self.crowd.count >= self.crowd.min_count

    def body_threshold(self) -> float:
        return self.config.body_threshold_centred if self.centred else self.config.body_threshold

    def decide(self, track: TrackVectors, now: float) -> Decision:
        scores = self._score(track, now)
        people = {pid: self.memory.person(pid) for pid in scores}
        best_id, best_p, best_evidence, best_scores = None, 0.0, _empty_evidence(), _Scores()
        best_known_p = 0.0
        # Known people first: on a tie (a look learned by both) the enrolled name wins over unknown-N.
        ordered = sorted(
            scores.items(), key=lambda item: (people.get(item[0]) or {}).get("role") == "stranger"
        )
        for pid, s in ordered:
            person = people.get(pid)
            if person is None:
                continue
            p, evidence = self._probability(track, s)
            if person.get("role") in ("family", "visitor"):
                best_known_p = max(best_known_p, p)
            if p > best_p:
                best_id, best_p, best_evidence, best_scores = pid, p, evidence, s
        vehicle = track.kind == "vehicle"
        person = people.get(best_id) if best_id else None
        if person is not None and best_p >= 0.5 and person.get("role") in ("family", "visitor"):
            return Decision(
                name=person["name"],
                identity_class="known_vehicle" if vehicle else str(person["role"]),
                confidence=best_p,
                evidence=best_evidence,
                global_id=person["person_id"],
                person_id=person["person_id"],
                early=best_p >= EARLY_CONFIDENCE,
                via_same_day=best_scores.body_same_day and best_evidence["face"] is None,
            )
        stranger = person if person is not None and best_p >= 0.5 else None
        return Decision(
            name=None,
            identity_class="unknown_vehicle" if vehicle else "stranger",
            confidence=1.0 - best_known_p,
            evidence=best_evidence,
            global_id=stranger["person_id"] if stranger else None,
            person_id=stranger["person_id"] if stranger else None,
        )

    # -- scoring -------------------------------------------------------------------------------

    def _probability(self, track: TrackVectors, s: _Scores) -> tuple[float, dict[str, float | None]]:
        """P(same) for one candidate with its per-modality evidence; 0 when a veto applies."""
        cfg = self.config
        evidence = _empty_evidence()
        face_p = body_p = None
        if s.face is not None:
            face_p = _sigmoid((cfg.face_distance - s.face) / FACE_SLOPE)
            evidence["face"] = face_p
        if s.body is not None:
            slope = BODY_SLOPE_CENTRED if self.centred else BODY_SLOPE_RAW
            body_p = _sigmoid((s.body - self.body_threshold()) / slope)
            evidence["body"] = body_p
        if s.vehicle is not None:
            body_p = _sigmoid((s.vehicle - cfg.vehicle_threshold) / VEHICLE_SLOPE)
            evidence["body"] = body_p
        gait_logit = 0.0
        if s.gait is not None:
            share = (GAIT_DIFFERENT - s.gait) / (GAIT_DIFFERENT - GAIT_SAME)
            gait_logit = GAIT_LOGIT * (2.0 * min(1.0, max(0.0, share)) - 1.0)
            evidence["gait"] = _sigmoid(gait_logit / GAIT_LOGIT * 2.0)
        if self._vetoed(track, s):
            return 0.0, evidence
        if face_p is not None:
            # Clothes change from day to day: with a face, a body mismatch is weak evidence against
            # (at most BODY_AGAINST_FACE), a body match supports at half weight.
            body_logit = max(BODY_AGAINST_FACE, 0.5 * _logit(body_p)) if body_p is not None else 0.0
            logit = _logit(face_p) + body_logit
        elif body_p is not None:
            logit = _logit(body_p)
        else:
            return 0.0, evidence  # gait alone never decides
        return _sigmoid(logit + gait_logit), evidence

    def _vetoed(self, track: TrackVectors, s: _Scores) -> bool:
        cfg = self.config
        # A clear face in the track that is far from this person's faces: someone else.
        if track.faces.size and s.has_face_prototypes and (s.face is None or s.face > FACE_VETO_DISTANCE):
            return True
        if (
            s.neg_face is not None
            and s.neg_face < cfg.face_distance
            and (s.face is None or s.neg_face <= s.face)
        ):
            return True
        threshold = self.body_threshold()
        if s.neg_body is not None and s.neg_body >= threshold and (s.body is None or s.neg_body >= s.body):
            return True
        return (
            s.neg_vehicle is not None
            and s.neg_vehicle >= cfg.vehicle_threshold
            and (s.vehicle is None or s.neg_vehicle >= s.vehicle)
        )

    def _score(self, track: TrackVectors, now: float) -> dict[str, _Scores]:
        scores: dict[str, _Scores] = {}

        def slot(hit: Hit) -> _Scores:
            return scores.setdefault(hit.person_id, _Scores())

        for face in track.faces:
            for hit in self.memory.search(PROTOTYPES, "face", face, now, CANDIDATES):
                distance = float(np.linalg.norm(hit.vectors["face"] - face))
                s = slot(hit)
                if hit.payload.get("negative"):
                    s.neg_face = distance if s.neg_face is None else min(s.neg_face, distance)
                else:
                    s.face = distance if s.face is None else min(s.face, distance)
        if track.faces.size:
            for s in scores.values():
                s.has_face_prototypes = s.face is not None or s.has_face_prototypes
            # A person with face prototypes that no face query reached is far from this face.
            for pid in self.memory.people_with("face", now):
                scores.setdefault(pid, _Scores()).has_face_prototypes = True
        if track.body is not None:
            query = self.crowd.centre(track.body[None])[0]
            for hit in self.memory.search(PROTOTYPES, "body", track.body, now, CANDIDATES):
                app = self.crowd.centre(hit.vectors["body"][None])[0]
                score = (1 - BODY_COLOUR_WEIGHT) * float(_unit(app) @ _unit(query))
                if track.colour is not None and "colour" in hit.vectors:
                    score += BODY_COLOUR_WEIGHT * float(_unit(hit.vectors["colour"]) @ _unit(track.colour))
                s = slot(hit)
                if hit.payload.get("negative"):
                    s.neg_body = score if s.neg_body is None else max(s.neg_body, score)
                elif s.body is None or score > s.body:
                    s.body, s.body_same_day = score, hit.payload.get("source") == "same_day"
        if track.vehicle is not None:
            for hit in self.memory.search(PROTOTYPES, "vehicle", track.vehicle, now, CANDIDATES):
                score = float(_unit(hit.vectors["vehicle"]) @ _unit(track.vehicle))
                s = slot(hit)
                if hit.payload.get("negative"):
                    s.neg_vehicle = score if s.neg_vehicle is None else max(s.neg_vehicle, score)
                else:
                    s.vehicle = score if s.vehicle is None else max(s.vehicle, score)
        if track.shape is not None and scores:
            for hit in self.memory.shapes(now):
                if hit.person_id not in scores or hit.payload.get("negative") or not hit.payload.get("shape"):
                    continue
                other = GaitSignature(proportions=_shape_dict(hit.payload["shape"]))
                distance = signature_distance(track.shape, other)
                if distance is not None:
                    s = scores[hit.person_id]
                    s.gait = distance if s.gait is None else min(s.gait, distance)
        return scores


def _empty_evidence() -> dict[str, float | None]:
    return {"face": None, "body": None, "gait": None}


def shape_list(signature: GaitSignature) -> list[float] | None:
    """A signature's proportions as a JSON list (NaN -> None), or None when it has none."""
    if not signature.proportions:
        return None
    return [None if math.isnan(v) else float(v) for v in signature.vector().tolist()]  # type: ignore[misc]


def _shape_dict(values: list[float | None]) -> dict[str, float]:
    from camd.identity.evidence.gait import PROPORTIONS

    return {name: float(v) for name, v in zip(PROPORTIONS, values, strict=False) if v is not None}
