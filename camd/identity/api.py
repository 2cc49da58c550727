"""The identity engine behind the control API: the running daemon holds the store, so the CLI's
people / enroll / correct / forget calls arrive here (camd.api.identity defines the contract)."""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camd.identity import enroll
from camd.identity.service import IdentityService
from camd.private import private_dir, restrict, write_private

# Image types the API accepts for enrollment, told apart by their first bytes.
SIGNATURES = {b"\xff\xd8\xff": ".jpg", b"\x89PNG\r\n\x1a\n": ".png", b"BM": ".bmp"}


def photo_suffix(data: bytes) -> str:
    for magic, suffix in SIGNATURES.items():
        if data.startswith(magic):
            return suffix
    raise ValueError("a photo is not a JPEG, PNG or BMP image")


class IdentityApi:
    """Implements camd.api.identity.IdentityBackend on the daemon's IdentityService."""

    def __init__(self, service: IdentityService, on_people_changed: Callable[[], None] | None = None) -> None:
        self.service = service
        self._changed = on_people_changed or (lambda: None)

    def list_people(self) -> dict[str, Any]:
        return {"people": [self._public(p) for p in enroll.people_list(self.service)]}

    def show_person(self, name: str) -> dict[str, Any]:
        return self._public(enroll.person_show(self.service, name))

    def enroll_photos(
        self, name: str, photos: list[bytes], category: str, kind: str = "person"
    ) -> dict[str, Any]:
        if not photos:
            raise ValueError("no photos given")
        with tempfile.TemporaryDirectory(prefix="camd-enroll-") as folder:
            for index, data in enumerate(photos):
                write_private(Path(folder) / f"photo{index:03d}{photo_suffix(data)}", data)
            result = enroll.enroll_photos(self.service, name, category, Path(folder), kind)
        self._changed()
        return result

    # -- enrollment from what only the daemon has or can read (camd.api.app.EnrollmentService) ----------

    def upload_dir(self) -> Path:
        """Where uploaded clips are written while they are processed: in the state dir, owner-only."""
        folder = private_dir(self.service.config.state_dir / "uploads")
        restrict(folder)  # an upload left by an earlier run too
        return folder

    def enroll_sighting(
        self, name: str, sighting_id: str, category: str, kind: str | None = None
    ) -> dict[str, Any]:
        result = enroll.enroll_sighting(self.service, name, category, sighting_id, kind)
        self._changed()
        return result

    def enroll_clip(
        self,
        name: str,
        clip: Path,
        category: str,
        kind: str = "person",
        track: int | None = None,
        start_s: float = 0.0,
        end_s: float | None = None,
        clip_name: str = "clip",
    ) -> dict[str, Any]:
        """Enroll from a clip the daemon can read (an upload). Several tracks and no `track`: the
        TrackChoiceNeeded error carries each track's crop as base64 JPEG (`crop_jpeg`), since the
        caller may not see the daemon's files."""
        listing = self.service.config.state_dir / "enroll-tracks" / _safe_stem(clip_name)
        try:
            result = enroll.enroll_clip(
                self.service, name, category, clip, track, kind, start_s, end_s, listing_dir=listing,
                clip_name=clip_name,
            )  # fmt: skip
        except enroll.TrackChoiceNeeded as choice:
            for row in choice.tracks:
                crop = row.get("crop")
                row["crop_jpeg"] = base64.b64encode(Path(crop).read_bytes()).decode() if crop else None
            raise
        except enroll.EnrollmentError as exc:  # say the user's file name, not the upload's
            raise enroll.EnrollmentError(str(exc).replace(str(clip), clip_name)) from None
        self._changed()
        return {**result, "clip": clip_name}

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

    def correct_not(self, sighting_id: str, not_name: str) -> dict[str, Any]:
        """"That was not NAME": refused unless camd matched the sighting to NAME (enroll.correct)."""
        return enroll.correct(self.service, sighting_id, not_name=not_name)

    def forget(self, name: str) -> dict[str, Any]:
        result = enroll.forget(self.service, name)
        self._changed()
        return result

    def reembed(self) -> dict[str, Any]:
        from camd.identity.reembed import reembed_all

        return {"body_model": self.service.body_model.describe(), **reembed_all(self.service).as_dict()}

    def sightings(self, name: str | None, camera: str | None, limit: int) -> dict[str, Any]:
        rows = self.service.memory.sightings(name)
        if camera is not None:
            rows = [row for row in rows if row.get("camera") == camera]
        return {"sightings": list(reversed(rows))[:limit]}

    # -- history (camd.api.history.HistoryService) -------------------------------------------------------

    def search(self, params: dict[str, Any], with_crops: bool = False) -> dict[str, Any]:
        from camd.history.queries import search_sightings
        from camd.history.search import SearchQuery

        return search_sightings(self.service, SearchQuery.build(**params), with_crops)

    def visits(self, params: dict[str, Any]) -> dict[str, Any]:
        from camd.history.queries import list_visits_for

        return list_visits_for(self.service, params)

    def digest(self, day: str | None) -> dict[str, Any]:
        from camd.history.queries import day_digest

        return day_digest(self.service, day)

    def export_person(self, name: str) -> bytes:
        from io import BytesIO

        from camd.identity.export import write_export

        buffer = BytesIO()
        write_export(self.service, name, buffer)
        return buffer.getvalue()

    @staticmethod
    def _public(person: dict[str, Any]) -> dict[str, Any]:
        """The API speaks of `category` (family / visitor) where the memory says `role`."""
        return {**person, "name": person.get("person_id", person.get("name")), "category": person.get("role")}


def _safe_stem(name: str) -> str:
    stem = Path(name).stem or "clip"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:64]
