"""The contract between the control API and the identity engine.

`IdentityBackend` is what the people routes call (camd.identity.api.IdentityApi implements it on the
daemon's identity service, tests on a stand-in); every method takes plain
arguments and returns a JSON-able dict (export_person: the zip's bytes). It signals a missing
person or sighting with LookupError (answered 404) and bad input with ValueError (answered 400);
the message is shown to the user, so it should say what to do.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

Category = Literal["family", "visitor"]


@runtime_checkable
class IdentityBackend(Protocol):
    """The identity engine as the control API sees it."""

    def list_people(self) -> dict[str, Any]:
        """Everyone enrolled: {"people": [{"name", "category", ...}, ...]}."""
        ...

    def show_person(self, name: str) -> dict[str, Any]:
        """One person: enrolment counts per modality, last seen, ..."""
        ...

    def enroll_photos(self, name: str, photos: list[bytes], category: Category) -> dict[str, Any]:
        """Add encoded images (JPEG/PNG bytes) of `name`, creating the person when new."""
        ...

    def rename(self, name: str, new_name: str) -> dict[str, Any]: ...

    def remove(self, name: str) -> dict[str, Any]:
        """Delete the person and their enrolled references; past sightings stay, unnamed."""
        ...

    def correct(self, sighting_id: str, name: str | None) -> dict[str, Any]:
        """Fix a sighting's identity: `name` is who it really was; None: nobody enrolled
        ("that was not Anna"), so it must not count as evidence for whom it was matched to."""
        ...

    def forget(self, name: str) -> dict[str, Any]:
        """Erase everything about the person: references, embeddings and their sightings."""
        ...

    def export_person(self, name: str) -> bytes:
        """Everything stored about the person, as a zip (camd.identity.export describes it)."""
        ...

    def sightings(self, name: str | None, camera: str | None, limit: int) -> dict[str, Any]:
        """Recent sightings, newest first: {"sightings": [...]}."""
        ...

    def reembed(self) -> dict[str, Any]:
        """Embed every enrolled person's kept crops again with the body model in use (reembed.py)."""
        ...
