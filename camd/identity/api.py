"""The identity engine behind the control API: the running daemon holds the store, so the CLI's
people / enroll / correct / forget calls arrive here (camd.api.identity defines the contract)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camd.identity import enroll
from camd.identity.service import IdentityService

# Image types the API accepts for enrollment, told apart by their first bytes.
SIGNATURES = {b"\xff\xd8\xff": ".jpg", b"\x89PNG\r\n\x1a\n": ".png", b"BM": ".bmp"}


def photo_suffix(data: bytes) -> str:
    for magic, suffix in SIGNATURES.items():
        if data.startswith(magic):
            return suffix
    raise ValueError("a photo is not a JPEG, PNG or BMP image")


class IdentityApi:
    """Implements camd.api.identity.IdentityService on the daemon's IdentityService."""

    def __init__(self, service: IdentityService, on_people_changed: Callable[[], None] | None = None) -> None:
        self.service = service
        self._changed = on_people_changed or (lambda: None)

    def list_people(self) -> dict[str, Any]:
        return {"people": [self._public(p) for p in enroll.people_list(self.service)]}

    def show_person(self, name: str) -> dict[str, Any]:
        return self._public(enroll.person_show(self.service, name))

    def enroll_photos(self, name: str, photos: list[bytes], category: str) -> dict[str, Any]:
        if not photos:
            raise ValueError("no photos given")
        with tempfile.TemporaryDirectory(prefix="camd-enroll-") as folder:
            for index, data in enumerate(photos):
                (Path(folder) / f"photo{index:03d}{photo_suffix(data)}").write_bytes(data)
            result = enroll.enroll_photos(self.service, name, category, Path(folder))
        self._changed()
        return result

    def rename(self, name: str, new_name: str) -> dict[str, Any]:
        result = enroll.rename(self.service, name, new_name)
        self._changed()
        return result

    def remove(self, name: str) -> dict[str, Any]:
        return self.forget(name)  # biometric data of a removed person is not kept

    def correct(self, sighting_id: str, name: str | None) -> dict[str, Any]:
        if name is not None:
            return enroll.correct(self.service, sighting_id, is_name=name)
        matched = self.service.memory.sighting(sighting_id).payload.get("person_id")
        if not matched or str(matched).startswith("unknown-"):
            raise ValueError(f"sighting {sighting_id} was not matched to anyone enrolled; nothing to correct")
        return enroll.correct(self.service, sighting_id, not_name=str(matched))

    def forget(self, name: str) -> dict[str, Any]:
        result = enroll.forget(self.service, name)
        self._changed()
        return result

    def sightings(self, name: str | None, camera: str | None, limit: int) -> dict[str, Any]:
        rows = self.service.memory.sightings(name)
        if camera is not None:
            rows = [row for row in rows if row.get("camera") == camera]
        return {"sightings": list(reversed(rows))[:limit]}

    @staticmethod
    def _public(person: dict[str, Any]) -> dict[str, Any]:
        """The API speaks of `category` (family / visitor) where the memory says `role`."""
        return {**person, "name": person.get("person_id", person.get("name")), "category": person.get("role")}
