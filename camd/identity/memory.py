"""The household memory in Qdrant: embedded at a local path by default, a server when a URL is set.

The spine records one sighting per finished track (time, camera, label, box, event id); the identity
stage adds embeddings and decisions to the same records.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models

from camd.config import Config

log = logging.getLogger(__name__)

SIGHTINGS = "sightings"


class MemoryLockedError(RuntimeError):
    """The embedded store is held by another process (usually the running daemon)."""


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
            f"the memory at {path} is in use by another camd process; stop it or use its control API"
        ) from exc


class Memory:
    def __init__(self, config: Config) -> None:
        self.client = open_client(config)
        if not self.client.collection_exists(SIGHTINGS):
            self.client.create_collection(SIGHTINGS, vectors_config={})
        self._restrict(config.store_path if not config.store.url else None)

    @staticmethod
    def _restrict(path: Path | None) -> None:
        """Biometric data: the store is readable by its owner only."""
        if path is None:
            return
        for root, dirs, files in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)
            for name in files:
                os.chmod(os.path.join(root, name), 0o600)

    def record_sighting(self, event: dict[str, Any]) -> None:
        """Store the final state of a track (the `after` of its `end` event)."""
        after = event["after"]
        point_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"camd:{after['id']}"))  # idempotent per event
        self.client.upsert(SIGHTINGS, [models.PointStruct(id=point_id, vector={}, payload=after)])

    def count_sightings(self) -> int:
        return self.client.count(SIGHTINGS).count

    def close(self) -> None:
        self.client.close()
