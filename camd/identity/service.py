"""The identity service: the extractors, the memory and the matcher behind one object that the daemon,
the CLI and the control API (through camd/identity/api.py) share.

Per camera, `camera(name)` gives a CameraIdentity (camd/identity/camera.py), which gathers evidence
and decides tracks; at a track's end it calls `conclude` here: the final decision, the sighting
(vectors and a small JPEG crop, camd/identity/crops.py), a same-day prototype for a confident
identification, and a stable `unknown-N` for strangers.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np

from camd.config.schema import Config
from camd.identity.body_compare import BodyComparer, CameraCrowds
from camd.identity.body_model import log_body_model, resolve_body_model
from camd.identity.calibrations import calibration_for
from camd.identity.camera import CameraIdentity
from camd.identity.crops import CropStore, SavedCrop
from camd.identity.extractors import Extractors
from camd.identity.matcher import Decision, Matcher, TrackSpan, TrackVectors, shape_list
from camd.identity.memory import Memory, UnknownPersonError
from camd.identity.person import PersonRecord, assign_stranger_id
from camd.identity.strangers import APPEARANCE
from camd.identity.track import TrackEvidence
from camd.outage import OutageLog
from camd.types import PERSON, Box, TrackSnapshot, kind_of, pixel_box

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
CROWD_SAVE_EVERY = 20  # sightings between saves of the crowd means
CROWD_KEY = "crowd_mean_body"


class IdentityService:
    def __init__(
        self,
        config: Config,
        memory: Memory | None = None,
        extractors: Extractors | None = None,
        load_extractors: bool = True,
    ) -> None:
        """load_extractors: load them now (the daemon: a camera thread must not stall seconds on its first
        person); False defers it to first use (CLI commands that only read or edit the memory)."""
        self.config = config
        # The body model decides the memory's body space: resolved (prepared, for the daemon) first.
        self.body_model = resolve_body_model(
            config.identity, config.models_path, prepare=load_extractors, adapted_dir=config.adapted_path
        )
        if load_extractors and config.identity.enabled and config.identity.body:
            log_body_model(self.body_model)
        # Commands that only read or edit the memory must not move it to another body space.
        self.memory = memory or Memory(config, self.body_model, may_switch=load_extractors)
        self.enabled = config.identity.enabled
        self._extractors = extractors
        self._extractors_lock = threading.Lock()
        # One set of crowd means (per camera and overall) per body space: another backbone's vectors have
        # another length and another bias.
        space = self.memory.body_space
        self.crowd_key = CROWD_KEY if space == "mobilenetv2" else f"{CROWD_KEY}:{space}"
        state = self.memory.load_state(self.crowd_key)
        dim = self.body_model.dim
        self.crowd = CameraCrowds.from_state(state, dim) if state else CameraCrowds(dim)
        self.calibration = calibration_for(self.body_model)
        comparer = BodyComparer(self.calibration, self.crowd, self.body_model.halves)
        self.matcher = Matcher(self.memory, config.identity, comparer)
        self._sightings_since_save = 0
        self._last_prune = 0.0
        self._strangers_since_prune = 0  # new unknown-N ids since the last prune
        self._write_lock = threading.Lock()
        self.crops = CropStore(config.crops_path)
        self.crop_outage = self.crops.outage
        self.store_outage = OutageLog(
            log, f"writing sightings to the memory ({config.store.url or config.store_path})",
            "events still carry their identity, but these sightings are not remembered",
        )
        if load_extractors and self.enabled:
            self.extractors  # noqa: B018  (loads them)
            if config.identity.body:  # a new body model: everyone's kept crops embedded again
                from camd.identity.reembed import reembed_pending

                reembed_pending(self)

    @property
    def extractors(self) -> Extractors:
        with self._extractors_lock:
            if self._extractors is None:
                self._extractors = Extractors.load(self.config, self.body_model)
            return self._extractors

    @property
    def enrollment_crops(self) -> Any:
        """The kept enrollment crops (enrollment_crops.py)."""
        return self.memory.enrollment_crops

    def sweep_enrollment_crops(self) -> int:
        return self.memory.enrollment_crops.sweep(self.memory.referenced_crops())

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
        return self.embed_crops(kind, [crop])[0]

    def embed_crops(
        self, kind: str, crops: list[np.ndarray]
    ) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
        """`embed_crop` of several crops in one batch: OSNet costs ~6.5 ms a crop alone and ~3 ms in a
        batch of 8 (docs/performance.md), so a frame's crops go together."""
        m = self.extractors
        if not crops:
            return []
        with m.lock:
            if kind == PERSON or kind == "person":
                if m.body is None or m.colour is None:
                    return [(None, None)] * len(crops)
                return list(zip(m.body.embed(crops), m.colour.embed(crops), strict=True))
            if m.vehicle is None:
                return [(None, None)] * len(crops)
            return [(vector, None) for vector in m.vehicle.embed(crops)]

    def face_in_person(self, image: np.ndarray, box: Any) -> np.ndarray | None:
        m = self.extractors
        if m.face is None:
            return None
        with m.lock:
            found = m.face.face_in_person(image, box)
        return None if found is None else found.embedding

    def pose(self, image: np.ndarray, box: Any) -> np.ndarray | None:
        m = self.extractors
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
        crop: SavedCrop | None = None
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
        if decision.name is not None or decision.person_id is not None or decision.identity_class is None:
            return decision
        new_id = assign_stranger_id(self.memory, vectors.kind, track.camera, now, now + self._retention_s())
        self._strangers_since_prune += 1
        return replace(decision, person_id=new_id, global_id=new_id)

    def _store_sighting(
        self,
        evidence: TrackEvidence | None,
        vectors: TrackVectors,
        decision: Decision | None,
        track: TrackSnapshot,
        now: float,
    ) -> SavedCrop | None:
        """The sighting in the memory; returns the crop it was stored with."""
        sighting_id = track.event_id
        crop = None
        best = evidence.best_crop() if evidence is not None else None
        if best is not None and self.config.identity.save_crops:
            crop = self.crops.save(sighting_id, best.image, now)
        # A person track's other kept crops too: what `camd adapt` learns from (camd/adapt/tracks.py).
        kept = self._save_kept_crops(sighting_id, evidence, crop, now) if track.label == "person" else []
        known = decision is not None and decision.name is not None
        payload: dict[str, Any] = {
            "event_id": track.event_id, "camera": track.camera, "label": track.label,
            "track_id": track.track_id, "start_time": track.start_time,
            "end_time": track.end_time or track.frame_time, "box": pixel_box(track.box),
            "top_score": round(track.top_score, 4), "frames": track.frames,
            "crop": str(crop.path) if crop is not None else None,
            **({"crops": kept} if kept else {}),
            "shape": shape_list(vectors.shape) if vectors.shape is not None else None,
            "person_id": decision.person_id if decision is not None else None,
            # Strangers' sightings expire; enrolled people's are kept until forgotten.
            "expires_at": None if known else now + self._retention_s(),
            **({} if decision is None else decision.to_dict()),
        }  # fmt: skip
        stored = vectors.stored_vectors() if self.enabled else {}
        self.memory.add_sighting(sighting_id, stored, payload)
        return crop

    def _save_kept_crops(
        self, sighting_id: str, evidence: TrackEvidence | None, best: SavedCrop | None, now: float
    ) -> list[str]:
        """The track's kept crops beside its best one (`<sighting>~N.jpg`); deleted with the sighting."""
        if best is None or evidence is None:
            return []
        paths = [str(best.path)]
        for n, kept in enumerate(evidence.crops[1:], start=1):
            saved = self.crops.save(f"{sighting_id}~{n}", kept.image, now)
            if saved is not None:
                paths.append(str(saved.path))
        return paths if len(paths) > 1 else []

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
            self.crowd.update(vectors.body, track.camera)
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


def _store_write_errors() -> tuple[type[BaseException], ...]:
    """What a failing store raises: SQLite (the embedded store: "database or disk is full"), OS
    errors, and qdrant-client's errors for a server that does not answer or refuses."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    return (sqlite3.Error, OSError, ResponseHandlingException, UnexpectedResponse)


STORE_WRITE_ERRORS = _store_write_errors()


def _span(track: TrackSnapshot) -> TrackSpan:
    """A finished track's camera, times and last box (in whole pixels, as its sighting records it)."""
    box: Box = tuple(pixel_box(track.box))  # type: ignore[assignment]
    return TrackSpan(track.camera, track.start_time, track.end_time or track.frame_time, box)


def _shape(vectors: TrackVectors) -> list[float] | None:
    return shape_list(vectors.shape) if vectors.shape is not None else None


__all__ = ["CameraIdentity", "IdentityService", "UnknownPersonError"]
