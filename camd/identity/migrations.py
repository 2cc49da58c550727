"""The memory's schema migrations: what a store made by an older camd needs, done once when it is opened.

- Stores made before the sighting log kept sightings in Qdrant collections: they are moved into the log
  (sightings.py), then those collections are dropped.
- A store opened with another body backbone than last time (`identity.body_model`): every prototype but
  the body appearance (faces, vehicles, gait shapes) is copied into the new space's collection once, and
  who needs re-enrolling is logged; the old collection stays (switching back finds it).
Each is idempotent: an interrupted migration resumes on the next open.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from qdrant_client import models

from camd.identity.evidence.body import MOBILENET_SPACE
from camd.identity.layout import BODY_SPACE_KEY, BODY_VECTORS, PROTOTYPES, ROLES, SIGHTINGS, body_collections

if TYPE_CHECKING:
    import threading
    from collections.abc import Iterator

    from qdrant_client import QdrantClient

    from camd.identity.hit import Hit
    from camd.identity.sightings import SightingLog

log = logging.getLogger("camd.identity.memory")  # the memory's messages, under its name


class StoreMigrations:
    """Mixed into Memory (memory.py), which provides the client, the log and the helpers used here."""

    client: QdrantClient
    log: SightingLog
    body_space: str
    _lock: threading.RLock

    if TYPE_CHECKING:

        def _c(self, collection: str) -> str: ...
        def _every_space(self, collection: str) -> list[str]: ...
        def _pages(self, collection: str) -> Iterator[list[Any]]: ...
        def _scroll(self, collection: str, flt: models.Filter | None, vectors: bool = False) -> list[Any]: ...
        @staticmethod
        def _hit(point: Any) -> Hit: ...
        def load_state(self, key: str) -> dict[str, Any] | None: ...
        def save_state(self, key: str, value: dict[str, Any]) -> None: ...
        def people(self, include_strangers: bool = False) -> list[dict[str, Any]]: ...
        def people_with(self, modality: str, now: float) -> set[str]: ...

    def _check_body_size(self, dim: int) -> None:
        with self._lock:
            params = self.client.get_collection(self._c(PROTOTYPES)).config.params.vectors
        size = params["body"].size if isinstance(params, dict) and "body" in params else None
        if size != dim:
            raise RuntimeError(
                f"memory collection {self._c(PROTOTYPES)} holds {size}-d body vectors, but body space "
                f"{self.body_space} makes {dim}-d ones; this store was not made by this camd version"
            )

    def _move_sightings_to_log(self) -> None:
        """Stores made before the sighting log kept sightings in Qdrant collections (one per body space):
        copy them into the log, then drop those collections. An interrupted move resumes (merge keeps what
        is there), and a collection is dropped only once all of it is in the log."""
        for collection in self._every_space(SIGHTINGS):
            with self._lock:
                if not self.client.collection_exists(collection):
                    continue
            space = MOBILENET_SPACE if collection == SIGHTINGS else collection[len(SIGHTINGS) + 1 :]
            moved = 0
            for page in self._pages(collection):
                for point in page:
                    hit = self._hit(point)
                    self.log.merge(hit.key or str(point.id), hit.vectors, hit.payload, space)
                    moved += 1
            with self._lock:
                self.client.delete_collection(collection)
            log.info("memory: moved %d sightings from collection %s into the sighting log", moved, collection)

    def _switch_body_space(self) -> None:
        """When the body backbone changed since the store was last opened, carry the rest over once."""
        state = self.load_state(BODY_SPACE_KEY)
        previous = str(state.get("space")) if state else MOBILENET_SPACE  # stores made before body spaces
        if previous == self.body_space:
            if state is None:
                self.save_state(BODY_SPACE_KEY, {"space": self.body_space})
            return
        self._carry_over(previous)
        self.save_state(BODY_SPACE_KEY, {"space": self.body_space})

    def _carry_over(self, previous: str) -> None:
        """Copy the prototypes from the previous space's collection: faces, vehicles, gait shapes as they
        are. Body vectors cannot be converted between backbones: a body prototype whose crops were kept
        (enrollment_crops.py: enrolled people's) comes over without its body vector, marked `reembed`,
        and the identity service embeds its crops again once the new model is loaded (reembed.py); one
        without crops (a stranger's look) stays behind. Points already here (from an earlier time in this
        space) are kept as they are. Idempotent: an interrupted copy resumes. The sighting log keeps each
        sighting's body vectors per space, so sightings need no copy."""
        source = body_collections(previous)
        if not self.client.collection_exists(source[PROTOTYPES]):
            return
        copied = 0
        lost_body: set[str] = set()
        reembedding: set[str] = set()  # people whose body prototypes come back from their kept crops
        dropped = {*BODY_VECTORS, "colour"}
        target = self._c(PROTOTYPES)
        present = {point.id for point in self._scroll(target, None)}
        for page in self._pages(source[PROTOTYPES]):
            points = []
            for point in page:
                if point.id in present:
                    continue
                raw = point.vector if isinstance(point.vector, dict) else {}
                vectors = {k: v for k, v in raw.items() if k not in dropped and v is not None}
                payload = dict(point.payload or {})
                keeps_crops = "body" in raw and bool(payload.get("crops"))
                if "body" in raw:
                    (reembedding if keeps_crops else lost_body).add(str(payload.get("person_id")))
                payload["modalities"] = [m for m in payload.get("modalities", []) if m not in dropped]
                if keeps_crops:
                    payload["reembed"] = True  # its body vector comes back from its kept crops
                elif not payload["modalities"]:
                    continue  # it held body appearance only
                points.append(models.PointStruct(id=point.id, vector=vectors, payload=payload))
            if points:
                with self._lock:
                    self.client.upsert(target, points)
                copied += len(points)
        roles = {p["person_id"]: p.get("role") for p in self.people(include_strangers=True)}
        needing = lost_body - reembedding - self.people_with("body", time.time())
        enrolled = sorted(pid for pid in needing if roles.get(pid) in ROLES)
        strangers = sum(1 for pid in needing if roles.get(pid) == "stranger")
        log.warning(
            "identity.body_model changed (body space %s -> %s): body vectors of different backbones are not "
            "comparable. Copied %d prototypes; the body prototypes of %d people with kept enrollment crops "
            "are embedded again by the new model; the old collection stays, for switching back. No body "
            "prototypes any more for %s: re-enroll them (camd enroll NAME --photos DIR, or --clip FILE) to "
            "recognise them from behind again. %d strangers will get new unknown-N ids.",
            previous, self.body_space, copied, len(reembedding),
            ", ".join(enrolled) or "nobody enrolled", strangers,
        )  # fmt: skip
