"""Identity on one camera's tracks: evidence gathered frame by frame, early decisions, and each
track concluded when it ends (the sighting stored, the decision handed back). It returns values
(IdentityDecision); the pipeline (camd/tracks.py) puts them into the events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from camd.identity.evidence._crops import crop_box
from camd.identity.evidence.gait import PoseSample
from camd.identity.evidence.quality import crop_quality
from camd.identity.track import ENOUGH_FACES, MAX_FACE_TRIES, KeptCrop, TrackEvidence, pose_turns
from camd.identity.views import view_at
from camd.types import Box, Frame, Identity, IdentityDecision, TrackedObject, TrackSnapshot

if TYPE_CHECKING:
    from camd.identity.service import IdentityService

log = logging.getLogger(__name__)


class CameraIdentity:
    """One camera's open tracks and their evidence; called from that camera's thread only."""

    def __init__(self, service: IdentityService, camera: str) -> None:
        self.service, self.camera = service, camera
        self.tracks: dict[int, TrackEvidence] = {}
        self.stats = {"embeds": 0, "face_tries": 0, "poses": 0, "decisions": 0, "early": 0}

    def observe(
        self, frame: Frame, tracked: list[TrackedObject], identities: Mapping[int, Identity]
    ) -> list[IdentityDecision]:
        """Gather evidence from this frame for the tracked objects that are open tracks (`identities`:
        who each open track is published as); return the early decisions that name a track anew."""
        if not self.service.enabled:
            return []
        decisions = []
        boxes = [t.detection.box for t in tracked]
        now = frame.timestamp
        present = []
        for obj in tracked:
            current = identities.get(obj.track_id)
            if current is None:
                continue
            evidence = self.tracks.get(obj.track_id)
            if evidence is None:
                evidence = TrackEvidence.for_label(
                    obj.detection.label, self.service.config.identity.best_crops, self.camera
                )
                self.tracks[obj.track_id] = evidence
            present.append((obj, current, evidence))
        posed = pose_turns([(obj.track_id, e, obj.detection.box) for obj, _, e in present], now)
        candidates = [
            look(self.service, evidence, frame, obj, boxes, self.stats, pose=obj.track_id in posed)
            for obj, _, evidence in present
        ]
        keep(self.service, frame, [c for c in candidates if c is not None], self.stats)
        for obj, current, evidence in present:
            if evidence.decision_due(now):
                decision = self._decide_early(evidence, obj.track_id, current, now)
                if decision is not None:
                    decisions.append(decision)
        return decisions

    def _decide_early(
        self, evidence: TrackEvidence, track_id: int, current: Identity, now: float
    ) -> IdentityDecision | None:
        decision = self.service.matcher.decide(evidence.vectors(with_shape=False), time.time())
        self.stats["decisions"] += 1
        news = decision.early and current.name != decision.name
        evidence.decided(now, news)
        if not news:
            return None
        self.stats["early"] += 1
        return IdentityDecision(track_id, decision.identity())

    def end(self, track: TrackSnapshot) -> IdentityDecision:
        """An announced track ended: decide it for good and store its sighting. When nothing could be
        decided (or the memory failed) the track keeps the identity it has."""
        evidence = self.tracks.pop(track.track_id, None)
        try:
            decision, crop = self.service.conclude(evidence, track, time.time())
        except Exception:  # the memory failing must not lose the end event
            log.exception("camera %s: identity of track %s failed", self.camera, track.track_id)
            return IdentityDecision(track.track_id, track.identity)
        identity = decision.identity() if decision is not None else track.identity
        return IdentityDecision(track.track_id, identity, crop)

    def drop(self, track_id: int) -> None:
        """A track ended that was never announced (a flicker): its evidence goes, no sighting."""
        self.tracks.pop(track_id, None)


@dataclass
class Candidate:
    """A crop of this frame that enters its track's top-K by quality: to embed (with the frame's other
    candidates, in one batch) and keep."""

    evidence: TrackEvidence
    box: Box
    crop: np.ndarray
    quality: float
    keypoints: np.ndarray | None


def look(
    service: IdentityService,
    evidence: TrackEvidence,
    frame: Frame,
    obj: TrackedObject,
    boxes: list[Any],
    stats: dict[str, int],
    pose: bool = True,
) -> Candidate | None:
    """One frame of a track: a pose when due and `pose` (its turn this frame, see `pose_turns`); the
    crop when it enters the track's top-K by quality (track.py explains the budget), else None."""
    box = obj.detection.box
    evidence.frames += 1
    try:
        quality = crop_quality(frame.image, box, boxes).score
        crop = crop_box(frame.image, box)
    except ValueError:
        return None  # a box with no pixels inside the frame
    evidence.path.append((frame.timestamp, box))
    keypoints = None
    if pose and service.config.identity.gait and evidence.pose_wanted(frame.timestamp, box):
        keypoints = service.pose(frame.image, box)
        if keypoints is not None:
            evidence.poses.append(PoseSample(frame.timestamp, box, keypoints))
            stats["poses"] = stats.get("poses", 0) + 1
    if not evidence.wants(quality):
        return None
    return Candidate(evidence, box, crop, quality, keypoints)


def keep(service: IdentityService, frame: Frame, candidates: list[Candidate], stats: dict[str, int]) -> None:
    """Embed the frame's candidate crops (one batch per kind), keep each in its track, and try a face."""
    for kind in {c.evidence.kind for c in candidates}:
        of_kind = [c for c in candidates if c.evidence.kind == kind]
        for candidate, (appearance, colour) in zip(
            of_kind, service.embed_crops(kind, [c.crop for c in of_kind]), strict=True
        ):
            _keep_one(service, frame, candidate, appearance, colour, stats)


def _keep_one(
    service: IdentityService,
    frame: Frame,
    candidate: Candidate,
    appearance: np.ndarray | None,
    colour: np.ndarray | None,
    stats: dict[str, int],
) -> None:
    evidence, box = candidate.evidence, candidate.box
    person = evidence.kind == "person"
    view = view_at(frame.timestamp, evidence.path, candidate.keypoints) if person else None
    kept = KeptCrop(candidate.quality, candidate.crop.copy(), box, frame.timestamp, appearance, colour, view)
    evidence.keep(kept)
    stats["embeds"] = stats.get("embeds", 0) + 1
    face_model = service.extractors.face if service.config.identity.face else None
    if not person or face_model is None:
        return
    if len(evidence.faces) >= ENOUGH_FACES or evidence.face_tries >= MAX_FACE_TRIES:
        return
    if (box[3] - box[1]) * 0.3 < face_model.min_face_px:
        return  # head region too small: face_in_person would skip it anyway
    evidence.face_tries += 1
    stats["face_tries"] = stats.get("face_tries", 0) + 1
    face = service.face_in_person(frame.image, box)
    if face is not None:
        evidence.faces.append(face)
        evidence.changed = evidence.new_face = True
