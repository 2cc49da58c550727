"""The household memory in Qdrant: embedded at a local path by default, a server when a URL is set.

Three collections (names carry a schema version, so a later layout can live beside this one):
- people: one point per person or vehicle (name, role, kind, created, last seen, seen count); strangers
  are people too (`unknown-N`, role "stranger"), and expire with their sightings;
- prototypes: vectors a person is recognised by, several per person per modality, each with when, where
  and how it was learned; negative ones (from "not NAME") and short-lived same-day ones (`expires_at`).
  Strangers' looks are not here: they are their sightings' own vectors in the sighting log, searched in
  RAM (strangers.py), and the queries below return them beside the collection's prototypes;
- meta: small state (the crowd mean used for centring, the stranger counters).
Sightings, one per finished track (time, camera, label, the track's vectors, the decision, a crop path),
are history rather than something searched by vector: they go to the sighting log (sightings.py, SQLite
on disk), so that memory does not grow with every track. Stores made before that kept their sightings in
Qdrant: migrations.py moves them into the log on open.

The embedded (local) mode keeps every point in RAM, deleted ones too, until the client is reopened.
Strangers and same-day prototypes come and go all day, so after `COMPACT_AFTER` deletions the prune
reopens the local client, which loads only the live points.

Vectors are named: "face" (128-d dlib, Euclidean), "body" (1280-d raw MobileNetV2 rows, or 512-d OSNet),
"colour" (72-d clothing colour), "vehicle" (196-d). A point holds only the names it has. Body vectors are
stored raw: centring on the crowd mean happens at comparison time, so prototypes never go stale as the mean
moves.

Body vectors of different backbones (or of different OSNet weights) are not comparable, so prototypes
live in one collection per body space (`identity.body_model`): the default MobileNetV2 keeps the plain
name above, OSNet adds its space, e.g. `camd_prototypes_v1_osnet_x1_0_<sha256[:12]>` (the sighting log
keeps each body vector under its space). Switching spaces carries the rest over once (migrations.py);
forgetting, renaming and retention act on every space. Collection and vector names: layout.py.

Enrollment is all or nothing, though the embedded store commits one point at a time: an enrollment's
prototypes carry its batch id, and the person's record, written last, lists the batches it committed
(`enrollments`). A process killed in between leaves prototypes no record vouches for; the matcher
ignores them (no person record) and the next open deletes them (`sweep_uncommitted`), so a retry
starts clean.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from camd.config.schema import Config
from camd.identity.body_model import BodyModel, resolve_body_model
from camd.identity.enrollment_crops import EnrollmentCrops
from camd.identity.hit import Hit
from camd.identity.layout import (
    BODY_SPACE_KEY,
    META,
    PEOPLE,
    PROTOTYPES,
    ROLES,
    SIGHTINGS,
    STRANGER_LOOKS,
    STRANGER_PREFIXES,
    VECTORS,
    body_collections,
    point_id,
)
from camd.identity.migrations import StoreMigrations
from camd.identity.sightings import SightingLog
from camd.identity.strangers import SOURCE as STRANGER_SOURCE
from camd.identity.strangers import Look, StrangerIndex
from camd.private import private_dir, restrict

log = logging.getLogger(__name__)

SCROLL_PAGE = 256
COMPACT_AFTER = 2000  # deleted points an embedded store holds in RAM before the prune reopens it


class MemoryLockedError(RuntimeError):
    """The embedded store is held by another process (usually the running daemon)."""


class BodySpaceMismatch(ValueError):
    """A command that only reads or edits the memory found another body model than the one the memory
    holds (usually another models folder): opening it would convert the memory to that model."""


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
    private_dir(path)
    try:
        return QdrantClient(path=str(path))
    except RuntimeError as exc:  # qdrant-client's local mode refuses a second process
        raise MemoryLockedError(
            f"the memory at {path} is held by another camd process (the running daemon?): stop it, "
            "or run this command through the daemon once its control API is available"
        ) from exc


def _not_expired(now: float) -> models.Filter:
    return models.Filter(must_not=[models.FieldCondition(key="expires_at", range=models.Range(lt=now))])


def _match(key: str, value: Any) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _match_any(key: str, values: list[str]) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key=key, match=models.MatchAny(any=values))])


class Memory(StoreMigrations):
    """People, prototypes and sightings; every method is thread-safe (one lock around the client)."""

    def __init__(self, config: Config, body: BodyModel | None = None, may_switch: bool | None = None) -> None:
        """body: the body model in use (its space names the collections); None: what is prepared.
        may_switch: whether opening may move the memory to this body space (the daemon, enrollment: yes;
        commands that only read or edit it: no). Default: yes when `body` is given."""
        self.config = config
        if may_switch is None:
            may_switch = body is not None
        if body is None:
            body = resolve_body_model(
                config.identity, config.models_path, prepare=False, adapted_dir=config.adapted_path
            )
        self.client = open_client(config)
        self._lock = threading.RLock()
        if not may_switch:
            self._refuse_another_space(body)
        self._path = None if config.store.url else config.store_path
        # A Qdrant server may be shared by several hubs: strangers' looks stay in it, so that every hub
        # links every stranger. An embedded store keeps them in the sighting log (strangers.py).
        self.shared = config.store.url is not None
        self._deleted_since_open = 0
        self.crops_dir = config.crops_path
        self.enrollment_crops = EnrollmentCrops(config.state_dir / "enrollment-crops")
        # Changes whenever an enrolled person is added, changed or forgotten (the matcher's thresholds
        # depend on how many people are enrolled).
        self.household_version = 0
        self.body_space = body.space
        self._names = {PEOPLE: PEOPLE, META: META, **body_collections(self.body_space)}
        dims = {**{name: dim for name, (dim, _) in VECTORS.items()}, "body": body.dim}
        named = {
            name: models.VectorParams(size=dims[name], distance=dist) for name, (_, dist) in VECTORS.items()
        }
        for collection, vectors in ((PEOPLE, {}), (PROTOTYPES, named), (META, {})):
            physical = self._names[collection]
            if not self.client.collection_exists(physical):
                self.client.create_collection(physical, vectors_config=vectors)
                if config.store.url:  # a server filters faster on indexed fields; local mode scans
                    for field in ("person_id", "expires_at", "name"):
                        self.client.create_payload_index(physical, field, _index_type(field))
        self._check_body_size(dims["body"])
        self.log = SightingLog(config.sightings_path)
        self.strangers = StrangerIndex(self.log.looks(self.body_space, time.time()))
        self._move_sightings_to_log()
        self._switch_body_space()
        if self._path is not None:
            restrict(self._path)
        self.sweep_uncommitted()
        self.enrollment_crops.sweep(self.referenced_crops())

    def referenced_crops(self) -> set[str]:
        """The enrollment crops some prototype of some body space lists (the others are leftovers)."""
        names: set[str] = set()
        for collection in self._every_space(PROTOTYPES):
            for point in self._scroll(collection, None):
                names.update((point.payload or {}).get("crops") or [])
        return names

    def collection(self, logical: str) -> str:
        """The physical collection for a logical name (PROTOTYPES, SIGHTINGS: of this body space)."""
        return self._names.get(logical, logical)

    _c = collection

    def _every_space(self, collection: str) -> list[str]:
        """Every body space's collection for a logical name (forget and retention act on all of them)."""
        with self._lock:
            names = [c.name for c in self.client.get_collections().collections]
        spaces = (n for n in names if n == collection or n.startswith(collection + "_"))
        return sorted({self._c(collection), *spaces})

    def _pages(self, collection: str) -> Iterator[list[Any]]:
        """Every point with payload and vectors, a page at a time (bounded memory on a large store)."""
        offset = None
        while True:
            with self._lock:
                page, offset = self.client.scroll(
                    collection, limit=SCROLL_PAGE, offset=offset, with_payload=True, with_vectors=True
                )
            yield page
            if offset is None:
                return

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
        """Create or replace a person's record. The committed enrollments it lists only ever grow: a
        record read before an enrollment committed (by a sighting, say) must not undo that commit."""
        with self._lock:
            stored = self.person(person["person_id"])
            committed = list((stored or {}).get("enrollments") or [])
            for batch in person.get("enrollments") or []:
                if batch not in committed:
                    committed.append(batch)
            person = {**person, "enrollments": committed}
            self.client.upsert(
                PEOPLE,
                [models.PointStruct(id=point_id(f"person:{person['person_id']}"), vector={}, payload=person)],
            )
            if person.get("role") in ROLES or (stored or {}).get("role") in ROLES:
                self.household_version += 1

    def commit_enrollment(self, person: dict[str, Any], batch: str) -> dict[str, Any]:
        """Write the person record last: it lists `batch`, which makes that batch's prototypes count.
        `person`: the new record, or for someone already known the fields to change (role)."""
        with self._lock:
            stored = self.person(person["person_id"])
            record = {**stored, "role": person["role"]} if stored is not None else dict(person)
            record["enrollments"] = [batch]  # save_person adds it to those already committed
            self.save_person(record)
            return self.person(person["person_id"]) or record

    def sweep_uncommitted(self) -> int:
        """Delete prototypes of enrollments that never committed (the process died mid-enrollment)."""
        batched = models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key="batch"))])
        removed = 0
        with self._lock:
            records: dict[str, set[str]] = {}
            for collection in self._every_space(PROTOTYPES):
                orphans: dict[str, list[Any]] = {}
                for point in self._scroll(collection, batched):
                    payload = point.payload or {}
                    pid = str(payload.get("person_id"))
                    if pid not in records:
                        person = self.person(pid)
                        records[pid] = set((person or {}).get("enrollments") or [])
                    if payload.get("batch") not in records[pid]:
                        orphans.setdefault(pid, []).append(point.id)
                for pid, ids in orphans.items():
                    self.client.delete(collection, points_selector=models.PointIdsList(points=ids))
                    removed += len(ids)
                    log.warning(
                        "memory: removed %d prototype(s) of %r from an enrollment that did not finish (the "
                        "process stopped mid-way); enroll again to add them", len(ids), pid,
                    )
        return removed

    def discard_batch(self, batch: str) -> None:
        """Delete the prototypes of an enrollment that failed before it committed."""
        flt = models.Filter(must=[_match("batch", batch)])
        with self._lock:
            self.client.delete(self._c(PROTOTYPES), points_selector=models.FilterSelector(filter=flt))

    def enrolled_count(self, kind: str = "person", now: float | None = None) -> float:
        """How many people (or vehicles) a stranger could be taken for by their body: each enrolled
        person counts 1, and each body prototype beyond their first 0.5 (a second view of someone is
        another chance for a look-alike, but not an independent one)."""
        people = {p["person_id"] for p in self.people() if p.get("kind", "person") == kind}
        flt = models.Filter(
            must=[models.FieldCondition(key="modalities", match=models.MatchAny(any=["body"]))],
            must_not=[*(_not_expired(time.time() if now is None else now).must_not or []),
                      _match("negative", True)],
        )  # fmt: skip
        protos: dict[str, int] = {}
        for point in self._scroll(self._c(PROTOTYPES), flt):
            pid = str((point.payload or {}).get("person_id"))
            if pid in people:
                protos[pid] = protos.get(pid, 0) + 1
        return len(people) + 0.5 * sum(max(0, n - 1) for n in protos.values())

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
            for collection in self._every_space(PROTOTYPES):
                for point in self._scroll(collection, models.Filter(must=[_match("person_id", old)])):
                    self.client.set_payload(collection, {"person_id": new, "name": new}, points=[point.id])
            self.log.rename(old, new)
            self.strangers.rename(old, new)
            return person

    def forget(self, person_id: str) -> dict[str, int]:
        """Delete a person, every prototype (positive, negative, same-day) and every sighting and crop."""
        with self._lock:
            self.require_person(person_id)
            self.household_version += 1
            by_person = models.Filter(must=[_match("person_id", person_id)])
            prototypes = self.client.count(self._c(PROTOTYPES), count_filter=by_person).count
            prototypes += self.strangers.remove_people({person_id})
            self.log.delete_looks_of([person_id])
            sightings = self.log.delete_person(person_id)
            crops = self._remove_crops(sightings)
            kept: list[str] = []
            for collection in self._every_space(PROTOTYPES):
                for point in self._scroll(collection, by_person):
                    kept += (point.payload or {}).get("crops") or []
                self.client.delete(collection, points_selector=models.FilterSelector(filter=by_person))
            self.client.delete(PEOPLE, [point_id(f"person:{person_id}")])
            self._deleted_since_open += prototypes + 1
            enrollment_crops = self.enrollment_crops.remove(kept)
        return {"prototypes": prototypes, "sightings": len(sightings), "crops": crops,
                "enrollment_crops": enrollment_crops}  # fmt: skip

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
        batch: str | None = None,
        view: str | None = None,
        crops: list[str] | None = None,
    ) -> str:
        """Store one prototype (one or more named vectors, or only a gait shape); returns its key.
        batch: the enrollment it belongs to; it counts once `commit_enrollment` lists that batch.
        view: which way the person faced (views.py); crops: the kept crops its body vector was embedded
        from (enrollment_crops.py), so that another body model can embed them again."""
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
            **({"batch": batch} if batch is not None else {}),
            **({"view": view} if view is not None else {}),
            **({"crops": list(crops)} if crops else {}),
        }
        vector = {name: np.asarray(v, dtype=np.float32).ravel().tolist() for name, v in vectors.items()}
        with self._lock:
            self.client.upsert(
                self._c(PROTOTYPES), [models.PointStruct(id=point_id(key), vector=vector, payload=payload)]
            )
            if "body" in vectors and not negative and not person_id.startswith(STRANGER_PREFIXES):
                self.household_version += 1
        return key

    def set_body(self, hit: Hit, body: np.ndarray, colour: np.ndarray | None) -> None:
        """Give a stored prototype its body vector in this space again (reembed.py): the vectors it has
        beside (a face, a shape) stay."""
        payload = dict(hit.payload)
        payload.pop("reembed", None)
        modalities = set(payload.get("modalities", [])) | {"body"}
        payload["modalities"] = sorted(modalities | ({"colour"} if colour is not None else set()))
        vectors = {name: np.asarray(v, np.float32).ravel().tolist() for name, v in hit.vectors.items()}
        vectors["body"] = np.asarray(body, np.float32).ravel().tolist()
        if colour is not None:
            vectors["colour"] = np.asarray(colour, np.float32).ravel().tolist()
        with self._lock:
            point = models.PointStruct(id=point_id(hit.key), vector=vectors, payload=payload)
            self.client.upsert(self._c(PROTOTYPES), [point])
            if not str(hit.person_id).startswith(STRANGER_PREFIXES):
                self.household_version += 1

    def remove_prototypes(self, person_id: str, sighting_id: str) -> int:
        """Delete the prototypes a person learned from one sighting (a corrected stranger sighting)."""
        flt = models.Filter(must=[_match("person_id", person_id), _match("sighting_id", sighting_id)])
        with self._lock:
            count = self.client.count(self._c(PROTOTYPES), count_filter=flt).count
            for collection in self._every_space(PROTOTYPES):
                self.client.delete(collection, points_selector=models.FilterSelector(filter=flt))
            if self.log.delete_look(sighting_id, person_id):
                count += self.strangers.remove(sighting_id)
        return count

    def add_stranger_look(
        self, person_id: str, sighting_id: str, *, camera: str | None, face_until: float | None,
        look_until: float | None, shape: list[float] | None = None, learned_at: float | None = None,
    ) -> None:
        """Let a stored stranger sighting's own vectors link that stranger: its face until `face_until`,
        its body or vehicle look (and gait shape) until `look_until`. In the embedded store's case, a look
        row in the sighting log (strangers.py says why not Qdrant); on a shared server, Qdrant prototypes
        that every hub searches."""
        with self._lock:
            found = self.log.get(sighting_id, self.body_space)
            if found is None:
                raise UnknownPersonError(f"no sighting {sighting_id!r} to learn stranger {person_id} from")
            look = Look(
                sighting_id, person_id, camera, time.time() if learned_at is None else learned_at,
                face_until, look_until, list(shape) if shape is not None else None, found[1],
            )  # fmt: skip
            if self.shared:
                for part, until, vectors in look.parts():
                    self.add_prototype(
                        person_id, vectors, source=STRANGER_SOURCE, expires_at=until, camera=camera,
                        sighting_id=sighting_id, shape=look.shape if part == "look" else None,
                        learned_at=look.learned_at,
                    )  # fmt: skip
                return
            self.log.add_look(look)
            self.strangers.add(look)

    def prototypes(self, person_id: str | None = None, now: float | None = None) -> list[Hit]:
        """Every live prototype (of one person), with vectors."""
        must = [_match("person_id", person_id)] if person_id is not None else []
        flt = models.Filter(must=must, must_not=_not_expired(now).must_not if now is not None else None)
        stored = [self._hit(p) for p in self._scroll(self._c(PROTOTYPES), flt, vectors=True)]
        with self._lock:
            return stored + self.strangers.prototypes(person_id, now)

    def search(
        self, collection: str, using: str, vector: np.ndarray, now: float, limit: int = 64
    ) -> list[Hit]:
        """Nearest live points by one named vector (a candidate set: the matcher re-scores it)."""
        with self._lock:
            result = self.client.query_points(
                self._c(collection),
                query=np.asarray(vector, dtype=np.float32).ravel().tolist(),
                using=using,
                query_filter=_not_expired(now),
                limit=limit,
                with_payload=True,
                with_vectors=True,
            )
            looks = self.strangers.search(using, vector, now, limit) if collection == PROTOTYPES else []
        return [self._hit(p) for p in result.points] + looks

    def people_with(self, modality: str, now: float) -> set[str]:
        """Ids of people who have a live positive prototype of `modality`."""
        flt = models.Filter(
            must=[models.FieldCondition(key="modalities", match=models.MatchAny(any=[modality]))],
            must_not=[*(_not_expired(now).must_not or []), _match("negative", True)],
        )
        stored = {str((p.payload or {}).get("person_id")) for p in self._scroll(self._c(PROTOTYPES), flt)}
        with self._lock:
            return stored | self.strangers.people_with(modality, now)

    def stranger_looks(self, modality: str, now: float) -> int:
        """How many live strangers' looks carry `modality` (each a chance that a new stranger's look-alike
        is among them: the stranger-link threshold tightens with it, body_compare.BodyCalibration). Asked
        before every body decision: the embedded store's looks are in RAM, only a server is queried."""
        if not self.shared:
            with self._lock:
                return self.strangers.live_count(modality, now)
        flt = models.Filter(
            must=[models.FieldCondition(key="modalities", match=models.MatchAny(any=[modality])),
                  _match("source", STRANGER_SOURCE)],
            must_not=_not_expired(now).must_not,
        )  # fmt: skip
        return self.client.count(self._c(PROTOTYPES), count_filter=flt, exact=True).count

    def shapes(self, now: float) -> list[Hit]:
        """Prototypes that carry a gait/body-shape signature (a payload, compared in Python)."""
        flt = models.Filter(
            must=[models.FieldCondition(key="modalities", match=models.MatchAny(any=["shape"]))],
            must_not=_not_expired(now).must_not,
        )
        stored = [self._hit(p) for p in self._scroll(self._c(PROTOTYPES), flt)]
        with self._lock:
            return stored + self.strangers.shapes(now)

    # -- sightings (the log, sightings.py) ---------------------------------------------------------

    def add_sighting(self, sighting_id: str, vectors: dict[str, np.ndarray], payload: dict[str, Any]) -> None:
        self.log.add(sighting_id, vectors, payload, self.body_space)

    def sighting(self, sighting_id: str) -> Hit:
        """A sighting with its vectors of the body space in use."""
        found = self.log.get(sighting_id, self.body_space)
        if found is None:
            raise UnknownPersonError(
                f"no sighting {sighting_id!r} in the memory (see `camd people show NAME`)"
            )
        payload, vectors = found
        return Hit(sighting_id, payload.get("person_id") or "", payload, vectors)

    def update_sighting(self, sighting_id: str, payload: dict[str, Any]) -> None:
        if not self.log.update(sighting_id, payload):
            self.sighting(sighting_id)  # raises the readable error

    def sightings(self, person_id: str | None = None) -> list[dict[str, Any]]:
        """Payloads of a person's sightings (everyone's when None), oldest first."""
        return self.log.of_person(person_id)

    def everything_of(self, person_id: str) -> dict[str, list[tuple[str, Hit]]]:
        """Every prototype and sighting of a person in every body space, as (collection, hit): the
        export of everything stored about them. A prototype copied into a newer space is listed once,
        from the space in use; a sighting's body vectors of other spaces are named `body@SPACE`."""
        flt = models.Filter(must=[_match("person_id", person_id)])
        current = self._c(PROTOTYPES)
        seen: set[str] = set()
        prototypes: list[tuple[str, Hit]] = []
        for collection in sorted(self._every_space(PROTOTYPES), key=lambda c: c != current):
            for point in self._scroll(collection, flt, vectors=True):
                hit = self._hit(point)
                if hit.key not in seen:
                    seen.add(hit.key)
                    prototypes.append((collection, hit))
        with self._lock:
            prototypes += [(STRANGER_LOOKS, hit) for hit in self.strangers.prototypes(person_id)]
        logged = self.log.of_person_with_vectors(person_id, self.body_space, every_space=True)
        sightings = [
            (SIGHTINGS, Hit(str(payload.get("sighting_id")), person_id, payload, vectors))
            for payload, vectors in logged
        ]
        return {PROTOTYPES: prototypes, SIGHTINGS: sightings}

    def count_sightings(self) -> int:
        return self.log.count()

    # -- retention ---------------------------------------------------------------------------------

    def prune(self, now: float | None = None, max_strangers: int | None = None) -> dict[str, int]:
        """Delete what has expired: strangers' sightings, crops and people, same-day prototypes; then,
        beyond `max_strangers`, the least recently seen strangers (record and prototypes)."""
        now = time.time() if now is None else now
        expired = models.Filter(must=[models.FieldCondition(key="expires_at", range=models.Range(lt=now))])
        counts: dict[str, int] = {}
        with self._lock:
            sightings = self.log.delete_expired(now)
            counts["sightings"] = len(sightings)
            counts["crops"] = self._remove_crops(sightings)
            counts["prototypes"] = self.client.count(self._c(PROTOTYPES), count_filter=expired).count
            counts["people"] = self.client.count(PEOPLE, count_filter=expired).count
            for collection in (*self._every_space(PROTOTYPES), PEOPLE):
                self.client.delete(collection, points_selector=models.FilterSelector(filter=expired))
            self._deleted_since_open += counts["prototypes"] + counts["people"]
            self.log.delete_expired_looks(now)
            counts["prototypes"] += self.strangers.prune(now)  # strangers' faces, looks no longer linking
            if max_strangers is not None:
                counts["strangers_forgotten"] = self._forget_oldest_strangers(max_strangers)
            if self._path is not None and self._deleted_since_open >= COMPACT_AFTER:
                self._reopen()
        if any(counts.values()):
            log.info("memory prune: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
        return counts

    def _forget_oldest_strangers(self, keep: int) -> int:
        """Forget the least recently seen strangers beyond `keep`: their record and prototypes (a stranger
        forgotten is one a later track can no longer be linked to). Their sightings stay in the log."""
        is_stranger = models.Filter(must=[_match("role", "stranger")])
        strangers = [p.payload or {} for p in self._scroll(PEOPLE, is_stranger)]
        if len(strangers) <= keep:
            return 0
        strangers.sort(key=lambda p: (p.get("last_seen") or p.get("created") or 0.0, p.get("person_id", "")))
        oldest = [str(p["person_id"]) for p in strangers[: len(strangers) - keep]]
        for start in range(0, len(oldest), SCROLL_PAGE):
            chunk = oldest[start : start + SCROLL_PAGE]
            theirs = _match_any("person_id", chunk)
            for collection in self._every_space(PROTOTYPES):
                self._deleted_since_open += self.client.count(collection, count_filter=theirs).count
                self.client.delete(collection, points_selector=models.FilterSelector(filter=theirs))
            self.log.delete_looks_of(chunk)
            self.strangers.remove_people(set(chunk))
            self.client.delete(PEOPLE, points_selector=models.PointIdsList(
                points=[point_id(f"person:{pid}") for pid in chunk]))  # fmt: skip
        self._deleted_since_open += len(oldest)
        return len(oldest)

    def _reopen(self) -> None:
        """Reopen the embedded store: it loads only live points, freeing the RAM deleted ones held."""
        self.client.close()
        self.client = open_client(self.config)
        log.info("memory: reopened the embedded store to free %d deleted points", self._deleted_since_open)
        self._deleted_since_open = 0

    # -- meta --------------------------------------------------------------------------------------

    def _refuse_another_space(self, body: BodyModel) -> None:
        if not self.client.collection_exists(META):
            return
        state = self.load_state(BODY_SPACE_KEY)
        stored = str(state.get("space")) if state else None
        if stored is None or stored == body.space:
            return
        self.client.close()
        why = f" ({body.fallback_reason})" if body.fallback_reason else ""
        raise BodySpaceMismatch(
            f"the memory in {self.config.state_dir} holds body vectors of {stored}, but this command found "
            f"{body.label}{why} in {self.config.models_path}: give it the daemon's models folder "
            f"(--models-dir DIR, or --config FILE) so that reading the memory does not convert it"
        )

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
            counts = {c: self.client.count(self._c(c)).count for c in (PEOPLE, PROTOTYPES)}
            return {**counts, STRANGER_LOOKS: len(self.strangers), SIGHTINGS: self.log.count()}

    def close(self) -> None:
        with self._lock:
            self.client.close()
            self.log.close()
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

    def _remove_crops(self, sightings: list[dict[str, Any]]) -> int:
        """Delete the crop files of these (deleted) sightings."""
        crops = {s.get("crop") for s in sightings} | {c for s in sightings for c in s.get("crops") or []}
        return sum(self._remove_crop(crop) for crop in crops)

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
