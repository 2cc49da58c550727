"""Strangers' looks: what links a returning stranger, kept once, in the sighting log, searched in RAM.

A stranger is remembered by the track that made them: its face (for `retention_days`) and its body or
vehicle look (a person's for `same_day_hours`: clothes change). Those vectors are the stranger's
sighting's own, already in the sighting log as float16; a look row there only says whose they are and
until when each links. Nothing is copied into Qdrant: its embedded store pickles every float (~9 bytes
each, ~11 KB for one body look) and keeps every point it ever held in RAM until reopened, while a busy
camera makes a new stranger every few seconds. (With a Qdrant server, which several hubs may share while
each keeps its own log, looks are Qdrant prototypes instead: `Memory.add_stranger_look`.)

`StrangerIndex` holds the live looks in RAM (float32, ~5.4 KB a stranger) and answers the matcher's
queries the way the prototype collection does: nearest by one named vector, who has a modality, gait
shapes, a person's prototypes. Each look is seen as up to two prototypes, as the store kept them: a face
one and an appearance one (body + colour, or vehicle, with the track's gait shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from camd.identity.hit import Hit

FACE = "face"
APPEARANCE = ("body", "colour", "vehicle")
SOURCE = "stranger"  # the prototype source the matcher and `camd people` see


@dataclass(frozen=True, slots=True)
class Look:
    """One stranger sighting's vectors and how long each links: `face_until` for the face,
    `look_until` for the appearance (None: that part does not link at all)."""

    sighting_id: str
    person_id: str
    camera: str | None
    learned_at: float
    face_until: float | None
    look_until: float | None
    shape: list[float | None] | None = None
    vectors: dict[str, np.ndarray] = field(default_factory=dict)

    def parts(self) -> list[tuple[str, float, dict[str, np.ndarray]]]:
        """(part, until, vectors) for the face part and the appearance part it holds."""
        out = []
        if self.face_until is not None and FACE in self.vectors:
            out.append((FACE, self.face_until, {FACE: self.vectors[FACE]}))
        appearance = {k: v for k, v in self.vectors.items() if k in APPEARANCE}
        if self.look_until is not None and appearance:
            out.append(("look", self.look_until, appearance))
        return out

    def hit(self, part: str, until: float, vectors: dict[str, np.ndarray]) -> Hit:
        key = f"look:{self.sighting_id}:{part}"
        shape = self.shape if part == "look" else None
        payload: dict[str, Any] = {
            "key": key, "person_id": self.person_id,
            "modalities": sorted(vectors) + (["shape"] if shape is not None else []),
            "source": SOURCE, "negative": False, "expires_at": until, "learned_at": self.learned_at,
            "camera": self.camera, "sighting_id": self.sighting_id, "shape": shape,
        }  # fmt: skip
        return Hit(key, self.person_id, payload, vectors)


class StrangerIndex:
    """The live strangers' looks in RAM, searched by brute force (a few thousand rows at most:
    `identity.max_strangers` caps them). Not thread-safe: the memory calls it under its lock."""

    def __init__(self, looks: list[Look] | None = None) -> None:
        self._looks: dict[str, Look] = {}
        self._hits: dict[str, list[Hit]] = {}  # each look's parts as prototypes, made once
        self._tables: dict[str, _Table] = {}  # by modality, rebuilt after a change
        for look in looks or []:
            self.add(look)

    def __len__(self) -> int:
        return len(self._looks)

    def add(self, look: Look) -> None:
        hits = [look.hit(part, until, vectors) for part, until, vectors in look.parts()]
        if hits:
            self._looks[look.sighting_id] = look
            self._hits[look.sighting_id] = hits
            self._tables.clear()

    def remove(self, sighting_id: str) -> int:
        """Forget one sighting's look; returns how many prototypes (parts) went with it."""
        self._looks.pop(sighting_id, None)
        hits = self._hits.pop(sighting_id, [])
        if hits:
            self._tables.clear()
        return len(hits)

    def remove_people(self, person_ids: set[str]) -> int:
        gone = [sid for sid, look in self._looks.items() if look.person_id in person_ids]
        return sum(self.remove(sid) for sid in gone)

    def rename(self, old: str, new: str) -> None:
        for sid, look in list(self._looks.items()):
            if look.person_id == old:
                self.remove(sid)
                self.add(replace(look, person_id=new))

    def prune(self, now: float) -> int:
        """Drop the parts that stopped linking before `now`; returns how many."""
        removed = 0
        for sid, look in list(self._looks.items()):
            face = look.face_until if look.face_until is not None and look.face_until >= now else None
            appearance = look.look_until if look.look_until is not None and look.look_until >= now else None
            if face == look.face_until and appearance == look.look_until:
                continue
            before = self.remove(sid)
            self.add(replace(look, face_until=face, look_until=appearance))
            removed += before - len(self._hits.get(sid, []))
        return removed

    # -- the matcher's queries ---------------------------------------------------------------------

    def search(self, using: str, vector: np.ndarray, now: float, limit: int) -> list[Hit]:
        """The `limit` nearest live prototypes by one named vector: Euclidean for faces, cosine for the
        rest (as the Qdrant collection measures them; the matcher re-scores what it gets)."""
        table = self._table(using)
        if table is None:
            return []
        query = np.asarray(vector, dtype=np.float32).ravel()
        alive = table.until >= now
        if using == FACE:
            order = np.linalg.norm(table.rows - query, axis=1)
        else:
            order = -(table.unit_rows @ (query / max(float(np.linalg.norm(query)), 1e-12)))
        order = np.where(alive, order, np.inf)
        best = np.argsort(order, kind="stable")[: min(limit, int(alive.sum()))]
        return [table.hits[i] for i in best]

    def people_with(self, modality: str, now: float) -> set[str]:
        return {hit.person_id for hit in self._live(now) if modality in hit.vectors}

    def live_count(self, modality: str, now: float) -> int:
        """How many live prototypes carry `modality`: each is one more chance of a look-alike."""
        table = self._table(modality)
        return 0 if table is None else int((table.until >= now).sum())

    def shapes(self, now: float) -> list[Hit]:
        return [hit for hit in self._live(now) if hit.payload.get("shape") is not None]

    def prototypes(self, person_id: str | None = None, now: float | None = None) -> list[Hit]:
        return [
            hit for hit in self._live(now)
            if person_id is None or hit.person_id == person_id
        ]  # fmt: skip

    def _live(self, now: float | None) -> list[Hit]:
        every = (hit for hits in self._hits.values() for hit in hits)
        return [hit for hit in every if now is None or hit.payload["expires_at"] >= now]

    def _table(self, modality: str) -> _Table | None:
        if modality not in self._tables:
            hits = [hit for hit in self._live(None) if modality in hit.vectors]
            if not hits:
                return None
            self._tables[modality] = _Table(hits, modality)
        return self._tables[modality]


class _Table:
    """One modality's vectors stacked for a brute-force query."""

    def __init__(self, hits: list[Hit], modality: str) -> None:
        self.hits = hits
        self.rows = np.stack([hit.vectors[modality] for hit in hits]).astype(np.float32)
        norms = np.linalg.norm(self.rows, axis=1, keepdims=True)
        self.unit_rows = self.rows / np.maximum(norms, 1e-12)
        self.until = np.array([hit.payload["expires_at"] for hit in hits], dtype=np.float64)

