"""A person's (or vehicle's) record in the memory, as a value: enrolled people and strangers alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """Who camd knows: `person_id` is the name (`unknown-N` / `vehicle-N` for strangers)."""

    person_id: str
    name: str
    role: str  # family | visitor | stranger
    kind: str = "person"  # person | vehicle
    created: float | None = None
    last_seen: float | None = None
    last_camera: str | None = None
    seen_count: int = 0
    expires_at: float | None = None  # strangers only: forgotten after this

    @property
    def is_stranger(self) -> bool:
        return self.role == "stranger"

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> PersonRecord:
        """A record as the memory stores it (older records may lack the later fields)."""
        return cls(
            person_id=str(payload["person_id"]),
            name=str(payload.get("name") or payload["person_id"]),
            role=str(payload.get("role") or ""),
            kind=str(payload.get("kind") or "person"),
            created=payload.get("created"),
            last_seen=payload.get("last_seen"),
            last_camera=payload.get("last_camera"),
            seen_count=int(payload.get("seen_count") or 0),
            expires_at=payload.get("expires_at"),
        )

    def payload(self) -> dict[str, Any]:
        """The record as the memory stores it."""
        return {
            "person_id": self.person_id, "name": self.name, "role": self.role, "kind": self.kind,
            "created": self.created, "last_seen": self.last_seen, "last_camera": self.last_camera,
            "seen_count": self.seen_count, "expires_at": self.expires_at,
        }  # fmt: skip
