"""The household memory in Qdrant: embedded at a local path by default, a server when a URL is set.

Four collections (names carry a schema version, so a later layout can live beside this one):
- people: one point per person or vehicle (name, role, kind, created, last seen, seen count); strangers
  are people too (`unknown-N`, role "stranger"), and expire with their sightings;
- prototypes: vectors a person is recognised by, several per person per modality, each with when, where
  and how it was learned; negative ones (from "not NAME") and short-lived same-day ones (`expires_at`);
- sightings: one per finished track (time, camera, label, the track's vectors, the decision, a crop path);
- meta: small state (the crowd mean used for centring, the stranger counters).

Vectors are named: "face" (128-d dlib, Euclidean), "body" (1280-d raw MobileNetV2 rows), "colour" (72-d
clothing colour), "vehicle" (196-d). A point holds only the names it has. Body vectors are stored raw:
centring on the crowd mean happens at comparison time, so prototypes never go stale as the mean moves.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from camd.config.models import Config

log = logging.getLogger(__name__)

SCHEMA = "v1"
PEOPLE = f"camd_people_{SCHEMA}"
PROTOTYPES = f"camd_prototypes_{SCHEMA}"
SIGHTINGS = f"camd_sightings_{SCHEMA}"
META = f"camd_meta_{SCHEMA}"

VECTORS: dict[str, tuple[int, models.Distance]] = {
    "face": (128, models.Distance.EUCLID),
    "body": (1280, models.Distance.COSINE),
    "colour": (72, models.Distance.COSINE),
    "vehicle": (196, models.Distance.COSINE),
}
ROLES = ("family", "visitor")
KINDS = ("person", "vehicle")
SCROLL_PAGE = 256


class MemoryLockedError(RuntimeError):
    """The embedded store is held by another process (usually the running daemon)."""


class UnknownPersonError(KeyError):
    """No person of that name (or sighting of that id) in the memory."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is meant to be read
        return str(self.args[0]) if self.args else "unknown"


def open_client(config: Config) -> QdrantClient:
    store = config.store
    if store.url:
        api_key = store.api_key.get_secret_value() if store.api_key else None
        return QdrantClient(url=store.url, api_key=api_key)
    path = config.store_path
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return QdrantClient(path=str(path))
    except RuntimeError as exc:  # qdrant-client's local mode refuses a second process
        raise MemoryLockedError(
            f"the memory at {path} is held by another camd process (the running daemon?): stop it, "
            "or run this command through the daemon once its control API is available"
        ) from exc


def point_id(key: str) -> str:
    """A stable Qdrant point id for a camd key (person id, sighting id, prototype key)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"camd:{key}"))


def restrict(path: Path) -> None:
    """Biometric data: readable by its owner only (directories 0700, files 0600)."""
    if not path.exists():
        return
    os.chmod(path, 0o700 if path.is_dir() else 0o600)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o700)
        for name in files:
            os.chmod(os.path.join(root, name), 0o600)


@dataclass(frozen=True, slots=True)
class Hit:
    """A stored prototype (or sighting) that a query found, with its vectors for re-scoring."""

    key: str
    person_id: str
    payload: dict[str, Any]
    vectors: dict[str, np.ndarray]


def _not_expired(now: float) -> models.Filter:
    return models.Filter(must_not=[models.FieldCondition(key="expires_at", range=models.Range(lt=now))])


def _match(key: str, value: Any) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


class Memory:
    """People, prototypes and sightings; every method is thread-safe (one lock around the client)."""

    def __init__(self, config: Config) -> None:
        self.client = open_client(config)
        self._lock = threading.RLock()
        self._path = None if config.store.url else config.store_path
        self.crops_dir = config.crops_path
        named = {name: models.VectorParams(size=dim, distance=dist) for name, (dim, dist) in VECTORS.items()}
        for collection, vectors in ((PEOPLE, {}), (PROTOTYPES, named), (SIGHTINGS, named), (META, {})):
            if not self.client.collection_exists(collection):
                self.client.create_collection(collection, vectors_config=vectors)
                if config.store.url:  # a server filters faster on indexed fields; local mode scans
                    for field in ("person_id", "expires_at", "name"):
                        self.client.create_payload_index(collection, field, _index_type(field))
        if self._path is not None:
            restrict(self._path)

    # -- people ------------------------------------------------------------------------------------

    def person(self, person_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.client.retrieve(PEOPLE, [point_id(f"person:{person_id}")], with_payload=True)
        return dict(found[0].payload or {}) if found else None

    def require_person(self, name: str) -> dict[str, Any]:
        person = self.person(name)
        if person is None:
            known = ", ".join(sorted(p["person_id"] for p in self.people())) or "nobody yet"
            raise UnknownPersonError(f"no one called {name!r} in the memory (known: {known})")
        return person

    def save_person(self, person: dict[str, Any]) -> None:
        with self._lock:
            self.client.upsert(
                PEOPLE,
                [models.PointStruct(id=point_id(f"person:{person['person_id']}"), vector={}, payload=person)],
            )

    def people(self, include_strangers: bool = False) -> list[dict[str, Any]]:
        flt = None if include_strangers else models.Filter(must_not=[_match("role", "stranger")])
        return sorted((p.payload or {} for p in self._scroll(PEOPLE, flt)), key=lambda p: p["person_id"])

    def next_unknown_id(self, kind: str) -> str:
        """`unknown-N` (people) or `vehicle-N`: a counter kept in meta, never reused after expiry."""
        prefix = "unknown" if kind == "person" else "vehicle"
        with self._lock:
            state = self.load_state(f"counter:{prefix}") or {"next": 1}
            number = int(state["next"])
            self.save_state(f"counter:{prefix}", {"next": number + 1})
        return f"{prefix}-{number}"

    def rename(self, old: str, new: str) -> dict[str, Any]:
        """Give a person a new name; their prototypes and sightings follow."""
        with self._lock:
            person = self.require_person(old)
            if self.person(new) is not None:
                raise ValueError(f"{new!r} is already in the memory; forget or rename it first")
            person.update(person_id=new, name=new)
            self.save_person(person)
            self.client.delete(PEOPLE, [point_id(f"person:{old}")])
            for collection in (PROTOTYPES, SIGHTINGS):
                for point in self._scroll(collection, models.Filter(must=[_match("person_id", old)])):
                    self.client.set_payload(collection, {"person_id": new, "name": new}, points=[point.id])
            return person

    def forget(self, person_id: str) -> dict[str, int]:
        """Delete a person, every prototype (positive, negative, same-day) and every sighting and crop."""
        with self._lock:
            self.require_person(person_id)
            by_person = models.Filter(must=[_match("person_id", person_id)])
            prototypes = self.client.count(PROTOTYPES, count_filter=by_person).count
            sightings = list(self._scroll(SIGHTINGS, by_person))
            crops = sum(self._remove_crop((s.payload or {}).get("crop")) for s in sightings)
            self.client.delete(PROTOTYPES, points_selector=models.FilterSelector(filter=by_person))
            self.client.delete(SIGHTINGS, points_selector=models.FilterSelector(filter=by_person))
            self.client.delete(PEOPLE, [point_id(f"person:{person_id}")])
        return {"prototypes": prototypes, "sightings": len(sightings), "crops": crops}

    # -- prototypes --------------------------------------------------------------------------------

    def add_prototype(
        self,
        person_id: str,
        vectors: dict[str, np.ndarray],
        *,
        source: str,
        negative: bool = False,
        expires_at: float | None = None,
        camera: str | None = None,
        sighting_id: str | None = None,
        shape: list[float] | None = None,
        learned_at: float | None = None,
    ) -> str:
        """Store one prototype (one or more named vectors, or only a gait shape); returns its key."""
        key = f"proto:{person_id}:{uuid.uuid4().hex}"
        payload = {
            "key": key,
            "person_id": person_id,
            "modalities": sorted(vectors) + (["shape"] if shape is not None else []),
            "source": source,  # photo | clip | sighting | same_day | correction | stranger
            "negative": negative,
            "expires_at": expires_at,
            "learned_at": time.time() if learned_at is None else learned_at,
            "camera": camera,
            "sighting_id": sighting_id,
            "shape": shape,
        }
        vector = {name: np.asarray(v, dtype=np.float32).ravel().tolist() for name, v in vectors.items()}
        with self._lock:
            self.client.upsert(
                PROTOTYPES, [models.PointStruct(id=point_id(key), vector=vector, payload=payload)]
            )
        return key

    def remove_prototypes(self, person_id: str, sighting_id: str) -> int:
        """Delete the prototypes a person learned from one sighting (a corrected stranger sighting)."""
        flt = models.Filter(must=[_match("person_id", person_id), _match("sighting_id", sighting_id)])
        with self._lock:
            count = self.client.count(PROTOTYPES, count_filter=flt).count
            self.client.delete(PROTOTYPES, points_selector=models.FilterSelector(filter=flt))
        return count

    def prototypes(self, person_id: str | None = None, now: float | None = None) -> list[Hit]:
        """Every live prototype (of one person), with vectors."""
        must = [_match("person_id", person_id)] if person_id is not None else []
        flt = models.Filter(must=must, must_not=_not_expired(now).must_not if now is not None else None)
        return [self._hit(p) for p in self._scroll(PROTOTYPES, flt, vectors=True)]

    def search(
        self, collection: str, using: str, vector: np.ndarray, now: float, limit: int = 64
    ) -> list[Hit]:
        """Nearest live points by one named vector (a candidate set: the matcher re-scores it)."""
        with self._lock:
            result = self.client.query_points(
                collection,
                query=np.asarray(vector, dtype=np.float32).ravel().tolist(),
                using=using,
                query_filter=_not_expired(now),
                limit=limit,
                with_payload=True,
                with_vectors=True,
            )
        return [self._hit(p) for p in result.points]

    def people_with(self, modality: str, now: float) -> set[str]:
        """Ids of people who have a live positive prototype of `modality`."""
        flt = models.Filter(
            must=[models.FieldCondition(key="modalities", match=models.MatchAny(any=[modality]))],
            must_not=[*(_not_expired(now).must_not or []), _match("negative", True)],
        )
        return {str((p.payload or {}).get("person_id")) for p in self._scroll(PROTOTYPES, flt)}

    def shapes(self, now: float) -> list[Hit]:
        """Prototypes that carry a gait/body-shape signature (a payload, compared in Python)."""
        flt = models.Filter(
            must=[models.FieldCondition(key="modalities", match=models.MatchAny(any=["shape"]))],
            must_not=_not_expired(now).must_not,
        )
        return [self._hit(p) for p in self._scroll(PROTOTYPES, flt)]

    # -- sightings ---------------------------------------------------------------------------------

    def add_sighting(self, sighting_id: str, vectors: dict[str, np.ndarray], payload: dict[str, Any]) -> None:
        vector = {name: np.asarray(v, dtype=np.float32).ravel().tolist() for name, v in vectors.items()}
        payload = {**payload, "sighting_id": sighting_id}
        with self._lock:
            self.client.upsert(
                SIGHTINGS,
                [models.PointStruct(id=point_id(f"sighting:{sighting_id}"), vector=vector, payload=payload)],
            )

    def sighting(self, sighting_id: str) -> Hit:
        with self._lock:
            found = self.client.retrieve(
                SIGHTINGS, [point_id(f"sighting:{sighting_id}")], with_payload=True, with_vectors=True
            )
        if not found:
            raise UnknownPersonError(
                f"no sighting {sighting_id!r} in the memory (see `camd people show NAME`)"
            )
        return self._hit(found[0])

    def update_sighting(self, sighting_id: str, payload: dict[str, Any]) -> None:
        self.sighting(sighting_id)
        with self._lock:
            self.client.set_payload(SIGHTINGS, payload, points=[point_id(f"sighting:{sighting_id}")])

    def sightings(self, person_id: str | None = None) -> list[dict[str, Any]]:
        flt = models.Filter(must=[_match("person_id", person_id)]) if person_id is not None else None
        rows = [p.payload or {} for p in self._scroll(SIGHTINGS, flt)]
        return sorted(rows, key=lambda s: s.get("end_time") or 0.0)

    def count_sightings(self) -> int:
        with self._lock:
            return self.client.count(SIGHTINGS).count

    # -- retention ---------------------------------------------------------------------------------

    def prune(self, now: float | None = None) -> dict[str, int]:
        """Delete what has expired: strangers' sightings, crops and people, same-day prototypes."""
        now = time.time() if now is None else now
        expired = models.Filter(must=[models.FieldCondition(key="expires_at", range=models.Range(lt=now))])
        counts: dict[str, int] = {}
        with self._lock:
            sightings = list(self._scroll(SIGHTINGS, expired))
            counts["crops"] = sum(self._remove_crop((s.payload or {}).get("crop")) for s in sightings)
            counts["sightings"] = len(sightings)
            counts["prototypes"] = self.client.count(PROTOTYPES, count_filter=expired).count
            counts["people"] = self.client.count(PEOPLE, count_filter=expired).count
            for collection in (SIGHTINGS, PROTOTYPES, PEOPLE):
                self.client.delete(collection, points_selector=models.FilterSelector(filter=expired))
        if any(counts.values()):
            log.info("memory prune: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
        return counts

    # -- meta --------------------------------------------------------------------------------------

    def load_state(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.client.retrieve(META, [point_id(f"meta:{key}")], with_payload=True)
        return dict((found[0].payload or {}).get("value") or {}) if found else None

    def save_state(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self.client.upsert(
                META, [models.PointStruct(id=point_id(f"meta:{key}"), vector={}, payload={"value": value})]
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {c: self.client.count(c).count for c in (PEOPLE, PROTOTYPES, SIGHTINGS)}

    def close(self) -> None:
        with self._lock:
            self.client.close()
        if self._path is not None:
            restrict(self._path)

    # -- helpers -----------------------------------------------------------------------------------

    def _scroll(self, collection: str, flt: models.Filter | None, vectors: bool = False) -> list[Any]:
        points: list[Any] = []
        offset = None
        with self._lock:
            while True:
                page, offset = self.client.scroll(
                    collection, scroll_filter=flt, limit=SCROLL_PAGE, offset=offset,
                    with_payload=True, with_vectors=vectors,
                )  # fmt: skip
                points.extend(page)
                if offset is None:
                    return points

    @staticmethod
    def _hit(point: Any) -> Hit:
        payload = dict(point.payload or {})
        raw = point.vector if isinstance(point.vector, dict) else {}
        vectors = {name: np.asarray(v, dtype=np.float32) for name, v in raw.items() if v is not None}
        return Hit(
            payload.get("key") or payload.get("sighting_id", ""),
            payload.get("person_id", ""),
            payload,
            vectors,
        )

    def _remove_crop(self, crop: str | None) -> int:
        if not crop:
            return 0
        path = Path(crop)
        try:
            path.unlink()
            return 1
        except FileNotFoundError:
            return 0


def _index_type(field: str) -> models.PayloadSchemaType:
    return models.PayloadSchemaType.FLOAT if field == "expires_at" else models.PayloadSchemaType.KEYWORD
