"""A person's (or vehicle's) record in the memory, as a value: enrolled people and strangers alike;
the rule for the names people are given, and the ids strangers get."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from camd.identity.layout import STRANGER_PREFIXES

if TYPE_CHECKING:
    from camd.identity.memory import Memory

STRANGER = "stranger"


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
        return self.role == STRANGER

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


def assign_stranger_id(memory: Memory, kind: str, camera: str, now: float, expires_at: float) -> str:
    """A new `unknown-N` (people) or `vehicle-N` id, its record saved: a stranger seen on `camera`
    now, forgotten at `expires_at` unless seen again."""
    new_id = memory.next_unknown_id(kind)
    memory.save_person(PersonRecord(
        person_id=new_id, name=new_id, role=STRANGER, kind=kind, created=now, last_seen=now,
        last_camera=camera, seen_count=0, expires_at=expires_at,
    ).payload())  # fmt: skip
    return new_id


def require_person_name(name: str) -> str:
    """Names become ids in MQTT payloads and file names: keep them plain."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > 64 or any(c in cleaned for c in "/\\\n\t"):
        raise ValueError(f"invalid name {name!r}: 1-64 characters, no slashes or control characters")
    if cleaned.startswith(STRANGER_PREFIXES):
        raise ValueError(
            f"names starting with 'unknown-' or 'vehicle-' are camd's own stranger ids: {name!r}"
        )
    return cleaned
