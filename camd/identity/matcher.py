"""Open-set decision for one track: who is it, how sure, and on what evidence.

Modalities are combined by their measured strength (docs/identity.md, "Matcher"):
- face: a dlib distance below `face_distance` (0.55; same person max 0.43, different min 0.78 measured)
  decides; a clear face far from a person's face prototypes vetoes that person whatever the body says;
- body: the track's mean appearance against each prototype, fused cosine (0.9 appearance, centred on the
  crowd once `RunningMean` has seen enough sightings, + 0.1 clothing colour); the threshold is the measured
  ~1% false-accept point per track (0.70 raw, 0.32 centred); it carries identity without a face;
- gait/body shape: AUC 0.72 only, so it moves the body's log-odds by at most +-GAIT_LOGIT, never decides.
Negative prototypes ("not NAME") veto NAME when the track is at least as close to them as to NAME's own.

Strangers (`unknown-N`, `vehicle-N`) are linked by a stricter rule than enrolled people, because a wrong merge
(two strangers' histories under one id) is worse than a missed re-link (one stranger under two ids). On
reid/train a body threshold at 1% false merges per pair still merged ~20% of new strangers with one of 30
strangers in memory, so a link needs: a face match (< face_distance), or a body/vehicle score at the
stricter stranger-link threshold from a track of at least `stranger_min_crops` crops that beats the
runner-up stranger by the link margin; the body's link threshold tightens with the number of live
strangers' looks (each is one more chance of a look-alike: body_compare.BodyCalibration.false_merge_rate);
and never a stranger seen on the same camera at the same time (two tracks at once are two people), unless
the two were at the same place (one object detected twice, e.g. as car and truck). docs/identity.md,
"Strangers", has the measurements.

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

from camd.config.schema import IdentityConfig
from camd.geometry import iou
from camd.identity.body_compare import BodyComparer
from camd.identity.evidence.gait import GaitSignature, signature_distance
from camd.identity.memory import PROTOTYPES, Hit, Memory
from camd.identity.views import PersonCheck, View
from camd.types import Evidence, Identity

FACE_SLOPE = 0.04
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
# Two concurrent tracks whose last boxes overlap this much are one object detected twice (a parked van
# detected as both car and truck on vtest.avi), not two strangers.
SAME_PLACE_IOU = 0.5


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
    body: np.ndarray | None = None  # raw mean appearance of the body model in use
    colour: np.ndarray | None = None  # (72,)
    vehicle: np.ndarray | None = None  # (196,)
    shape: GaitSignature | None = None
    body_crops: int = 0
    camera: str | None = None  # where the track was seen: body scores depend on it (body_compare.py)
    shape_view: View | None = None  # the view the body shape was measured in (views.py)
    person: PersonCheck | None = None  # whether its poses look like a person (people only)

    def stored_vectors(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if self.faces.size:
            out["face"] = self.faces.mean(axis=0)
        for name in ("body", "colour", "vehicle"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True)
class TrackSpan:
    """When and where a finished track was seen: two tracks at once on one camera are two objects."""

    camera: str
    start: float
    end: float
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class Decision:
    name: str | None  # a known person's or vehicle's name
    # family | visitor | stranger | known_vehicle | unknown_vehicle; None: not decided (`reason` says why)
    identity_class: str | None
    confidence: float | None
    evidence: dict[str, float | None]
    global_id: str | None  # name, unknown-N or vehicle-N; None for a stranger not yet given an id
    person_id: str | None  # whose memory this track joins (known or a matched stranger)
    early: bool = False  # enough evidence to publish before the track ends
    # The body match came from a same-day prototype: such a decision must not learn another one, or a
    # look-alike could keep a wrong same-day prototype alive forever.
    via_same_day: bool = False
    reason: str | None = None  # why a track was left without an identity (it does not look like a person)

    def identity(self) -> Identity:
        evidence = {k: (None if v is None else round(v, 3)) for k, v in self.evidence.items()}
        return Identity(
            name=self.name,
            identity_class=self.identity_class,
            confidence=None if self.confidence is None else round(self.confidence, 3),
            evidence=Evidence(**evidence, reason=self.reason),  # type: ignore[arg-type]
            global_id=self.global_id,
        )

    def to_dict(self) -> dict[str, Any]:
        identity = self.identity()
        return {
            "identity": identity.name, "identity_class": identity.identity_class,
            "confidence": identity.confidence, "evidence": identity.evidence.as_dict(),
            "global_id": identity.global_id, "person_id": self.person_id,
        }  # fmt: skip


@dataclass
class _Scores:
    face: float | None = None  # best distance, positive prototypes
    body: float | None = None  # best body score's excess over its naming threshold (body_compare.py)
    body_stranger: float | None = None  # best body score's excess over its stranger-link threshold
    body_same_day: bool = False  # the best body prototype is a same-day one
    vehicle: float | None = None
    gait: float | None = None  # best signature distance
    neg_face: float | None = None
    neg_body: float | None = None  # excess over the naming threshold, as `body`
    neg_vehicle: float | None = None
    has_face_prototypes: bool = False


class Matcher:
    def __init__(self, memory: Memory, config: IdentityConfig, body: BodyComparer) -> None:
        self.memory, self.config, self.body = memory, config, body
        self._household_version = -1

    def _track_household(self) -> None:
        """Naming thresholds depend on how many people are enrolled (body_compare.BodyCalibration)."""
        if self._household_version != self.memory.household_version:
            self._household_version = self.memory.household_version
            self.body.enrolled = self.memory.enrolled_count("person")

    @property
    def centred(self) -> bool:
        return self.body.crowds.mode == "centred"

    def decide(self, track: TrackVectors, now: float, span: TrackSpan | None = None) -> Decision:
        """Who the track is. `span` (a finished track's camera, times and box) lets stranger linking skip
        strangers seen at the same time elsewhere in the picture."""
        self._track_household()
        check = track.person
        if track.kind == "person" and not track.faces.size and check and check.looks_like_a_person is False:
            # A sign, foliage, a shadow: never a name, nor a stranger's id (views.py).
            evidence = {**_empty_evidence(), "person": check.share}
            return Decision(None, None, None, evidence, None, None, reason=check.reason())
        if track.body is not None:
            self.body.stranger_looks = self.memory.stranger_looks("body", now)
        scores = self._score(track, now)
        people = {pid: self.memory.person(pid) for pid in scores}
        best_known: tuple[float, str, dict[str, float | None], _Scores] | None = None
        for pid, s in scores.items():
            person = people.get(pid)
            if person is None or person.get("role") not in ("family", "visitor"):
                continue
            p, evidence = self._probability(track, s)
            if best_known is None or p > best_known[0]:
                best_known = (p, pid, evidence, s)
        best_known_p, best_known_evidence = (best_known[0], best_known[2]) if best_known else (0.0, None)
        vehicle = track.kind == "vehicle"
        # An enrolled person who passes is named, whoever else scores higher: a stranger's look may be
        # this very person seen earlier unrecognised (docs/identity.md, "Views").
        if best_known is not None and best_known_p >= 0.5:
            p, pid, evidence, s = best_known
            person = people[pid]
            return Decision(
                name=person["name"],
                identity_class="known_vehicle" if vehicle else str(person["role"]),
                confidence=p,
                evidence=evidence,
                global_id=person["person_id"],
                person_id=person["person_id"],
                early=p >= EARLY_CONFIDENCE,
                via_same_day=s.body_same_day and evidence["face"] is None,
            )
        strangers = {pid: s for pid, s in scores.items() if (people.get(pid) or {}).get("role") == "stranger"}
        linked = self._stranger_link(track, strangers, span)
        # Evidence: for the stranger it was linked to, else for the closest enrolled person (whom the
        # confidence, "sure it is nobody we know", is about).
        if linked:
            evidence = self._probability(track, strangers[linked])[1]
        else:
            evidence = best_known_evidence or _empty_evidence()
        return Decision(
            name=None,
            identity_class="unknown_vehicle" if vehicle else "stranger",
            confidence=1.0 - best_known_p,
            evidence=evidence,
            global_id=linked,
            person_id=linked,
        )

    # -- strangers -----------------------------------------------------------------------------

    def stranger_margin(self, kind: str) -> float:
        """How far the best stranger's appearance must beat the runner-up's to link (excess units)."""
        if kind == "vehicle":
            return self.config.stranger_vehicle_margin
        return self.body.stranger_margin + self.config.body_strictness

    def _stranger_link(
        self, track: TrackVectors, strangers: dict[str, _Scores], span: TrackSpan | None
    ) -> str | None:
        """The stranger this track is, or None for a new id (see the module docstring)."""

        def possible(pid: str) -> bool:  # checked for the few finalists only: a sightings scan each
            return not self._vetoed(track, strangers[pid]) and not (
                span is not None and self._concurrent(pid, span)
            )

        limit = self.config.face_distance
        faces = sorted((s.face, pid) for pid, s in strangers.items() if s.face is not None and s.face < limit)
        for _, pid in faces:  # faces are reliable (different people >= 0.78 measured): no margin needed
            if possible(pid):
                return pid
        if track.body_crops < self.config.stranger_min_crops:
            return None  # one or two crops are too noisy to re-link on
        # The best-scoring stranger must reach the threshold and beat every other stranger by the margin,
        # concurrent ones included: a look-alike seen at the same time shows how alike people look here.
        # Scores are excesses over the link threshold of each pair's relation (same camera, across, IR).
        margin = self.stranger_margin(track.kind)
        excesses = ((self._link_excess(track, s), pid) for pid, s in strangers.items())
        ranked = sorted(((e, pid) for e, pid in excesses if e is not None), reverse=True)
        if not ranked:
            return None
        score, pid = ranked[0]
        runner_up = ranked[1][0] if len(ranked) > 1 else -math.inf
        if score < 0.0 or score - runner_up < margin:
            return None
        if track.faces.size and strangers[pid].has_face_prototypes:
            return None  # both show faces and they did not match above: not the same person
        return pid if possible(pid) else None

    def _concurrent(self, stranger_id: str, span: TrackSpan) -> bool:
        """The stranger was seen on this camera while this track was: a different object, unless at the
        same place (one object detected twice)."""
        for sighting in self.memory.sightings(stranger_id):
            if sighting.get("camera") != span.camera:
                continue
            start, end = sighting.get("start_time"), sighting.get("end_time")
            if start is None or end is None or start > span.end or end < span.start:
                continue
            box = sighting.get("box")
            if span.box is not None and box is not None and iou(span.box, tuple(box)) >= SAME_PLACE_IOU:
                continue
            return True
        return False

    def _link_excess(self, track: TrackVectors, s: _Scores) -> float | None:
        if track.kind == "vehicle":
            return None if s.vehicle is None else s.vehicle - self.config.stranger_vehicle_threshold
        return None if s.body_stranger is None else s.body_stranger - self.config.body_strictness

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
            body_p = self.body.probability(s.body - cfg.body_strictness)
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
        if s.neg_body is not None and s.neg_body >= 0.0 and (s.body is None or s.neg_body >= s.body):
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
            query = self.body.prepare(track.body, track.camera)
            for hit in self.memory.search(PROTOTYPES, "body", track.body, now, CANDIDATES):
                scored = self.body.score(
                    track.body, track.camera, hit.vectors["body"], hit.payload.get("camera"),
                    track.colour, hit.vectors.get("colour"), prepared_query=query,
                )  # fmt: skip
                excess = self.body.excess(scored)
                s = slot(hit)
                if hit.payload.get("negative"):
                    s.neg_body = excess if s.neg_body is None else max(s.neg_body, excess)
                    continue
                if s.body is None or excess > s.body:
                    s.body, s.body_same_day = excess, hit.payload.get("source") == "same_day"
                link = self.body.stranger_excess(scored)
                s.body_stranger = link if s.body_stranger is None else max(s.body_stranger, link)
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
                # Body proportions change with the view (shoulders from the side): like views only, so
                # that a view never turns a passing body match into "stranger".
                if track.shape_view is None or hit.payload.get("view") != track.shape_view:
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
