"""The identity service: models, memory and matcher behind one object the daemon, the CLI and (later) the
control API share. Methods take plain arguments and return JSON-able dicts.

Per camera, `CameraIdentity` gathers evidence for every open track, answers early (an IdentityDecision)
when the evidence names someone confidently, and concludes each track when it ends: the decision, the
sighting (vectors, a small JPEG crop, handed back with the decision), a same-day prototype for a confident
identification, and a stable `unknown-N` for strangers. It returns values; the pipeline
(camd/tracks.py) puts them into the events.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camd.config.schema import Config
from camd.identity.evidence._crops import crop_box
from camd.identity.evidence.body import BodyEmbedder, body_dim, body_space, load_body_embedder
from camd.identity.evidence.centring import RunningMean
from camd.identity.evidence.colour import ClothingColourDescriptor
from camd.identity.evidence.face import FaceEmbedder
from camd.identity.evidence.gait import PoseSample
from camd.identity.evidence.pose import MoveNetPose
from camd.identity.evidence.quality import crop_quality
from camd.identity.evidence.vehicle import VehicleAppearanceEmbedder
from camd.identity.matcher import Decision, Matcher, TrackSpan, TrackVectors, shape_list
from camd.identity.memory import Memory, UnknownPersonError
from camd.identity.model_files import IdentityModelPaths
from camd.identity.person import PersonRecord
from camd.identity.strangers import APPEARANCE
from camd.identity.track import (
    ENOUGH_FACES,
    MAX_FACE_TRIES,
    KeptCrop,
    TrackEvidence,
    pose_turns,
)
from camd.outage import OutageLog
from camd.private import private_dir, write_private
from camd.types import (
    PERSON,
    Box,
    Frame,
    Identity,
    IdentityDecision,
    TrackedObject,
    TrackSnapshot,
    kind_of,
    pixel_box,
)

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
CROWD_SAVE_EVERY = 20  # sightings between saves of the crowd mean
CROP_HEIGHT = 128  # px: the stored JPEG is small on purpose
CROWD_KEY = "crowd_mean_body"
# Sightings (track means) before body vectors are centred on the crowd: track means are steadier than
# single crops, and on reid/train a mean of 62 track means already centred well (docs/identity.md).
CROWD_MIN_COUNT = 50


@dataclass
class Models:
    """The loaded extractors; None where a modality is disabled. One lock: LiteRT and dlib are not
    thread-safe, and two cameras embedding at once would only fight for the same 2 cores."""

    body: BodyEmbedder | None
    colour: ClothingColourDescriptor | None
    vehicle: VehicleAppearanceEmbedder | None
    face: FaceEmbedder | None
    pose: MoveNetPose | None
    lock: threading.Lock

    @classmethod
    def load(cls, config: Config) -> Models:
        ident = config.identity
        paths = IdentityModelPaths.prepare(config.models_path)
        return cls(
            body=load_body_embedder(ident, config.models_path) if ident.body else None,
            colour=ClothingColourDescriptor() if ident.body else None,
            vehicle=VehicleAppearanceEmbedder(paths.appearance_onnx) if ident.vehicle else None,
            face=FaceEmbedder(paths.face_shape, paths.face_resnet) if ident.face else None,
            pose=MoveNetPose(paths.movenet) if ident.gait else None,
            lock=threading.Lock(),
        )


class IdentityService:
    def __init__(
        self,
        config: Config,
        memory: Memory | None = None,
        models: Models | None = None,
        load_models: bool = True,
    ) -> None:
        """load_models: load the extractors now (the daemon: a camera thread must not stall seconds on its
        first person); False defers it to first use (CLI commands that only read or edit the memory)."""
        self.config = config
        self.memory = memory if memory is not None else Memory(config)
        self.enabled = config.identity.enabled
        self._models = models
        self._models_lock = threading.Lock()
        # One crowd mean per body space: a mean of another backbone's vectors has another length.
        space = body_space(config.identity)
        self.crowd_key = CROWD_KEY if space == "mobilenetv2" else f"{CROWD_KEY}:{space}"
        state = self.memory.load_state(self.crowd_key)
        self.crowd = (
            RunningMean.from_state(state, CROWD_MIN_COUNT)
            if state
            else RunningMean(body_dim(config.identity), CROWD_MIN_COUNT)
        )
        self.matcher = Matcher(self.memory, config.identity, self.crowd)
        self._sightings_since_save = 0
        self._last_prune = 0.0
        self._strangers_since_prune = 0  # new unknown-N ids since the last prune
        self._write_lock = threading.Lock()
        self.crop_outage = OutageLog(
            log, f"saving crops in {config.crops_path}", "sightings are stored without their crop"
        )
        self.store_outage = OutageLog(
            log, f"writing sightings to the memory ({config.store.url or config.store_path})",
            "events still carry their identity, but these sightings are not remembered",
        )
        if load_models and self.enabled:
            self.models  # noqa: B018  (loads them)

    @property
    def models(self) -> Models:
        with self._models_lock:
            if self._models is None:
                self._models = Models.load(self.config)
            return self._models

    def camera(self, name: str) -> CameraIdentity:
        return CameraIdentity(self, name)

    def people(self) -> list[PersonRecord]:
        """The enrolled people and vehicles (no strangers), by name."""
        return [PersonRecord.from_payload(p) for p in self.memory.people()]

    # -- run-time upkeep -------------------------------------------------------------------------

    def maybe_prune(self, now: float | None = None) -> dict[str, int] | None:
        """Prune once an hour, or sooner when a tenth of `max_strangers` new strangers came since the
        last prune (a busy street must not outgrow the cap by an hour's worth); the daemon calls this
        from its main loop."""
        now = time.time() if now is None else now
        busy = self._strangers_since_prune >= max(1, self.config.identity.max_strangers // 10)
        if now - self._last_prune < PRUNE_EVERY_S and not busy:
            return None
        return self.prune(now)

    def prune(self, now: float | None = None) -> dict[str, int]:
        now = time.time() if now is None else now
        self._last_prune = now
        self._strangers_since_prune = 0
        return self.memory.prune(now, max_strangers=self.config.identity.max_strangers)

    def close(self) -> None:
        try:
            self.memory.save_state(self.crowd_key, self.crowd.state())
        except STORE_WRITE_ERRORS as exc:  # a full disk: the crowd mean is learned again
            log.error("memory: could not save the crowd mean at stop (%s); it will be relearned", exc)
        self.memory.close()

    # -- evidence from images --------------------------------------------------------------------

    def embed_crop(self, kind: str, crop: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(appearance, colour) of one crop: body + clothing colour for people, vehicle for vehicles."""
        m = self.models
        with m.lock:
            if kind == PERSON or kind == "person":
                if m.body is None or m.colour is None:
                    return None, None
                return m.body.embed([crop])[0], m.colour.embed([crop])[0]
            if m.vehicle is None:
                return None, None
            return m.vehicle.embed([crop])[0], None

    def face_in_person(self, image: np.ndarray, box: Any) -> np.ndarray | None:
        m = self.models
        if m.face is None:
            return None
        with m.lock:
            found = m.face.face_in_person(image, box)
        return None if found is None else found.embedding

    def pose(self, image: np.ndarray, box: Any) -> np.ndarray | None:
        m = self.models
        if m.pose is None:
            return None
        with m.lock:
            return m.pose.keypoints(image, [box])[0]

    # -- finishing a track -----------------------------------------------------------------------

    def finalise(self, evidence: TrackEvidence | None, track: TrackSnapshot, now: float) -> Decision | None:
        """Decide a finished track, store its sighting and learn from it. `track` is its last snapshot."""
        return self.conclude(evidence, track, now)[0]

    def conclude(
        self, evidence: TrackEvidence | None, track: TrackSnapshot, now: float
    ) -> tuple[Decision | None, bytes | None]:
        """`finalise`, and the JPEG crop the sighting was stored with (None when none was written)."""
        vectors = evidence.vectors() if evidence is not None else TrackVectors(kind=kind_of(track.label))
        decision = None
        if self.enabled and evidence is not None:
            decision = self._final_decision(vectors, now, _span(track))
        crop: _Crop | None = None
        with self._write_lock:
            try:
                if decision is not None:
                    decision = self._assign_stranger(decision, vectors, track, now)
                crop = self._store_sighting(evidence, vectors, decision, track, now)
                if decision is not None:
                    self._learn(decision, vectors, track, now)
            except STORE_WRITE_ERRORS as exc:  # a full disk, a Qdrant server away: the event goes on
                self.store_outage.failed(exc)
                return decision, crop.jpeg if crop is not None else None
        self.store_outage.ok()
        return decision, crop.jpeg if crop is not None else None

    def _final_decision(self, vectors: TrackVectors, now: float, span: TrackSpan | None) -> Decision | None:
        if vectors.body is None and vectors.vehicle is None and not vectors.faces.size:
            return None  # nothing to decide on: leave the identity fields null
        return self.matcher.decide(vectors, now, span)

    def _assign_stranger(
        self, decision: Decision, vectors: TrackVectors, track: TrackSnapshot, now: float
    ) -> Decision:
        """A stranger nobody was linked to gets a new `unknown-N` (`vehicle-N`) id."""
        if decision.name is not None or decision.person_id is not None:
            return decision
        kind = vectors.kind
        new_id = self.memory.next_unknown_id(kind)
        self._strangers_since_prune += 1
        self.memory.save_person(PersonRecord(
            person_id=new_id, name=new_id, role="stranger", kind=kind, created=now, last_seen=now,
            last_camera=track.camera, seen_count=0, expires_at=now + self._retention_s(),
        ).payload())  # fmt: skip
        return replace(decision, person_id=new_id, global_id=new_id)

    def _store_sighting(
        self,
        evidence: TrackEvidence | None,
        vectors: TrackVectors,
        decision: Decision | None,
        track: TrackSnapshot,
        now: float,
    ) -> _Crop | None:
        """The sighting in the memory; returns the crop it was stored with."""
        sighting_id = track.event_id
        crop = None
        best = evidence.best_crop() if evidence is not None else None
        if best is not None and self.config.identity.save_crops:
            crop = self._save_crop(sighting_id, best.image, now)
        known = decision is not None and decision.name is not None
        payload: dict[str, Any] = {
            "event_id": track.event_id, "camera": track.camera, "label": track.label,
            "track_id": track.track_id, "start_time": track.start_time,
            "end_time": track.end_time or track.frame_time, "box": pixel_box(track.box),
            "top_score": round(track.top_score, 4), "frames": track.frames,
            "crop": str(crop.path) if crop is not None else None,
            "shape": shape_list(vectors.shape) if vectors.shape is not None else None,
            "person_id": decision.person_id if decision is not None else None,
            # Strangers' sightings expire; enrolled people's are kept until forgotten.
            "expires_at": None if known else now + self._retention_s(),
            **({} if decision is None else decision.to_dict()),
        }  # fmt: skip
        stored = vectors.stored_vectors() if self.enabled else {}
        self.memory.add_sighting(sighting_id, stored, payload)
        return crop

    def _learn(self, decision: Decision, vectors: TrackVectors, track: TrackSnapshot, now: float) -> None:
        pid = decision.person_id
        if pid is None:
            return
        person = self.memory.person(pid)
        if person is not None:
            person.update(
                last_seen=now, last_camera=track.camera, seen_count=int(person.get("seen_count", 0)) + 1
            )
            if person.get("role") == "stranger":
                person["expires_at"] = now + self._retention_s()
            self.memory.save_person(person)
        stored = vectors.stored_vectors()
        appearance = {k: v for k, v in stored.items() if k in ("body", "colour", "vehicle")}
        if decision.name is None:
            self._learn_stranger(pid, vectors, track, now)
        elif (
            decision.confidence >= self.config.identity.learn_confidence
            and appearance
            and not decision.via_same_day
        ):
            # Same-day appearance: today's clothes recognise this person from behind, on any camera.
            self.memory.add_prototype(
                pid, appearance, source="same_day", camera=track.camera, sighting_id=track.event_id,
                expires_at=now + self.config.identity.same_day_hours * 3600.0,
            )  # fmt: skip
        if vectors.body is not None:
            self.crowd.update(vectors.body[None])
            self._sightings_since_save += 1
            if self._sightings_since_save >= CROWD_SAVE_EVERY:
                self.memory.save_state(self.crowd_key, self.crowd.state())
                self._sightings_since_save = 0

    def _learn_stranger(self, pid: str, vectors: TrackVectors, track: TrackSnapshot, now: float) -> None:
        """Remember a stranger by this track so that a later sighting can be linked (matcher.py says when).

        A face is kept for the retention period. A person's body look is kept for `same_day_hours` only:
        clothes change, and every stranger kept is one more candidate for a wrong merge. A track of fewer
        than `stranger_min_crops` crops teaches no look at all: too noisy to link to later."""
        ident = self.config.identity
        stored = vectors.stored_vectors()
        retention = now + self._retention_s()
        face_until = retention if "face" in stored else None
        look_until = None
        if any(k in stored for k in APPEARANCE) and vectors.body_crops >= ident.stranger_min_crops:
            same_day = now + ident.same_day_hours * 3600.0
            look_until = retention if vectors.kind == "vehicle" else min(retention, same_day)
        if face_until is None and look_until is None:
            return
        # The sighting just stored holds these vectors: the look only says they link, and until when.
        self.memory.add_stranger_look(
            pid, track.event_id, camera=track.camera, face_until=face_until, look_until=look_until,
            shape=_shape(vectors) if look_until is not None else None, learned_at=now,
        )  # fmt: skip

    def _retention_s(self) -> float:
        return self.config.identity.retention_days * 86400.0

    def _save_crop(self, sighting_id: str, image: np.ndarray, now: float) -> _Crop | None:
        """The sighting's small JPEG, or None when it cannot be written (a full disk: logged once per
        outage, see OutageLog; the sighting is stored without it and the next crop tries again)."""
        folder = self.config.crops_path / time.strftime("%Y-%m-%d", time.localtime(now))
        scale = min(1.0, CROP_HEIGHT / max(1, image.shape[0]))
        small = (
            cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
        )
        ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            return None
        data = encoded.tobytes()
        path = folder / f"{_safe(sighting_id)}.jpg"
        try:
            private_dir(folder)
            private_dir(self.config.crops_path)
            write_private(path, data)
        except OSError as exc:
            with contextlib.suppress(OSError):  # no half-written JPEG left behind
                path.unlink()
            self.crop_outage.failed(exc)
            return None
        self.crop_outage.ok()
        return _Crop(path, data)


@dataclass(frozen=True, slots=True)
class _Crop:
    """A sighting's crop as written: the file, and its JPEG bytes for whoever shows it next."""

    path: Path
    jpeg: bytes


def _store_write_errors() -> tuple[type[BaseException], ...]:
    """What a failing store raises: SQLite (the embedded store: "database or disk is full"), OS
    errors, and qdrant-client's errors for a server that does not answer or refuses."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    return (sqlite3.Error, OSError, ResponseHandlingException, UnexpectedResponse)


STORE_WRITE_ERRORS = _store_write_errors()


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
        for obj, current, evidence in present:
            gather(self.service, evidence, frame, obj, boxes, self.stats, pose=obj.track_id in posed)
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


def gather(
    service: IdentityService,
    evidence: TrackEvidence,
    frame: Frame,
    obj: TrackedObject,
    boxes: list[Any],
    stats: dict[str, int] | None = None,
    pose: bool = True,
) -> None:
    """Add one frame of a track to its evidence: a pose when due and `pose` (its turn this frame, see
    `pose_turns`), appearance and a face try only for crops that enter the track's top-K by quality
    (track.py explains the budget)."""
    stats = stats if stats is not None else {}
    box = obj.detection.box
    evidence.frames += 1
    try:
        quality = crop_quality(frame.image, box, boxes).score
        crop = crop_box(frame.image, box)
    except ValueError:
        return  # a box with no pixels inside the frame
    person = evidence.kind == "person"
    if pose and service.config.identity.gait and evidence.pose_wanted(frame.timestamp, box):
        keypoints = service.pose(frame.image, box)
        if keypoints is not None:
            evidence.poses.append(PoseSample(frame.timestamp, box, keypoints))
            stats["poses"] = stats.get("poses", 0) + 1
    if not evidence.wants(quality):
        return
    appearance, colour = service.embed_crop(evidence.kind, crop)
    evidence.keep(KeptCrop(quality, crop.copy(), box, frame.timestamp, appearance, colour))
    stats["embeds"] = stats.get("embeds", 0) + 1
    face_model = service.models.face if service.config.identity.face else None
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


def _span(track: TrackSnapshot) -> TrackSpan:
    """A finished track's camera, times and last box (in whole pixels, as its sighting records it)."""
    box: Box = tuple(pixel_box(track.box))  # type: ignore[assignment]
    return TrackSpan(track.camera, track.start_time, track.end_time or track.frame_time, box)


def _shape(vectors: TrackVectors) -> list[float] | None:
    return shape_list(vectors.shape) if vectors.shape is not None else None


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def require_person_name(name: str) -> str:
    """Names become ids in MQTT payloads and file names: keep them plain."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > 64 or any(c in cleaned for c in "/\\\n\t"):
        raise ValueError(f"invalid name {name!r}: 1-64 characters, no slashes or control characters")
    if cleaned.startswith(("unknown-", "vehicle-")):
        raise ValueError(
            f"names starting with 'unknown-' or 'vehicle-' are camd's own stranger ids: {name!r}"
        )
    return cleaned


__all__ = ["CameraIdentity", "IdentityService", "Models", "Path", "UnknownPersonError", "require_person_name"]
