"""The memory's layout in Qdrant: collection and vector names of this schema version.

Collection names carry a schema version, so a later layout can live beside this one. Body vectors of
different backbones are not comparable, so prototypes live in one collection per body space (see
`body_collections`).
"""

from __future__ import annotations

import uuid

from qdrant_client import models

from camd.identity.evidence.body import MOBILENET_SPACE

SCHEMA = "v1"
PEOPLE = f"camd_people_{SCHEMA}"
PROTOTYPES = f"camd_prototypes_{SCHEMA}"
SIGHTINGS = f"camd_sightings_{SCHEMA}"  # the sighting log; a Qdrant collection in stores made before it
META = f"camd_meta_{SCHEMA}"
STRANGER_LOOKS = "stranger_looks"  # strangers' looks: in the sighting log, not a Qdrant collection

VECTORS: dict[str, tuple[int, models.Distance]] = {
    "face": (128, models.Distance.EUCLID),
    "body": (1280, models.Distance.COSINE),
    "colour": (72, models.Distance.COSINE),
    "vehicle": (196, models.Distance.COSINE),
}
BODY_VECTORS = ("body",)  # named vectors that depend on the body backbone
BODY_SPACE_KEY = "body_space"  # meta: the space the store was last opened with
ROLES = ("family", "visitor")
STRANGER_PREFIXES = ("unknown-", "vehicle-")  # strangers' ids; enrolled names never start so
KINDS = ("person", "vehicle")


def body_collections(space: str) -> dict[str, str]:
    """Logical collection name -> the collection that holds it for a body space (SIGHTINGS: only in
    stores made before the sighting log)."""
    if space == MOBILENET_SPACE:  # the names stores had before body spaces existed
        return {PROTOTYPES: PROTOTYPES, SIGHTINGS: SIGHTINGS}
    return {PROTOTYPES: f"{PROTOTYPES}_{space}", SIGHTINGS: f"{SIGHTINGS}_{space}"}


def point_id(key: str) -> str:
    """A stable Qdrant point id for a camd key (person id, sighting id, prototype key)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"camd:{key}"))
