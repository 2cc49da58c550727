"""Visits: one identity's sightings on any camera, joined while no gap between them is longer than
`history.visit_gap_s`. A visit says when and where someone arrived and left, how long they stayed
and which cameras they passed, instead of a blip per track.

`VisitBuilder` is fed sightings one at a time (the daemon, as tracks end) or all at once
(`build_visits`, for a log made without the daemon's recorder); both give the same visits. Sightings
arrive when their tracks end, so a later one may have started earlier (two cameras at once): a
sighting joins a visit it overlaps or comes within the gap of, on either side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from camd.types import PERSON

DEFAULT_GAP_S = 600.0


@dataclass(slots=True)
class Visit:
    """One identity's stay: the sightings it joins, in order of their start."""

    id: str  # "visit-<first sighting id>": stable whoever builds it
    person_id: str  # the name, or unknown-N / vehicle-N
    name: str | None  # the enrolled name (None for a stranger)
    identity_class: str | None
    kind: str  # person | vehicle
    start_time: float
    end_time: float
    expires_at: float | None  # the latest of its sightings' (None: kept until the person is forgotten)
    # (start, end, camera, sighting id) per sighting, ordered by start
    parts: list[tuple[float, float, str, str]] = field(default_factory=list)
    ended: bool = False

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_time - self.start_time)

    @property
    def sightings(self) -> list[str]:
        return [p[3] for p in self.parts]

    @property
    def arrival_camera(self) -> str:
        return self.parts[0][2]

    @property
    def departure_camera(self) -> str:
        return max(self.parts, key=lambda p: (p[1], p[0]))[2]

    @property
    def cameras(self) -> list[str]:
        """The cameras passed, in order (one entry per stretch on a camera)."""
        out: list[str] = []
        for _, _, camera, _ in self.parts:
            if not out or out[-1] != camera:
                out.append(camera)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "person_id": self.person_id, "name": self.name,
            "identity_class": self.identity_class, "kind": self.kind,
            "start_time": round(self.start_time, 3), "end_time": round(self.end_time, 3),
            "duration_s": round(self.duration_s, 1), "arrival_camera": self.arrival_camera,
            "departure_camera": self.departure_camera, "cameras": self.cameras,
            "sightings": self.sightings, "expires_at": self.expires_at, "ended": self.ended,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Visit:
        """A stored visit (its `parts` are kept under `_parts`)."""
        parts = [(float(a), float(b), str(c), str(d)) for a, b, c, d in data.get("_parts") or []]
        return cls(
            str(data["id"]), str(data["person_id"]), data.get("name"), data.get("identity_class"),
            str(data.get("kind") or PERSON), float(data["start_time"]), float(data["end_time"]),
            data.get("expires_at"), parts, bool(data.get("ended")),
        )  # fmt: skip

    def stored(self) -> dict[str, Any]:
        """What the log keeps: the public fields and the parts a restarted daemon continues from."""
        return {**self.to_dict(), "_parts": [list(p) for p in self.parts]}


def _identity(sighting: dict[str, Any]) -> str | None:
    pid = sighting.get("person_id")
    return str(pid) if pid else None


class VisitBuilder:
    """Open visits per identity; `add` a sighting, `close_due` at a time. Not thread-safe."""

    def __init__(self, gap_s: float = DEFAULT_GAP_S, open_visits: Iterable[Visit] = ()) -> None:
        if gap_s < 0:
            raise ValueError("the visit gap must be 0 seconds or more")
        self.gap_s = gap_s
        self.open: dict[str, Visit] = {v.person_id: v for v in open_visits if not v.ended}

    def add(self, sighting: dict[str, Any]) -> list[tuple[str, Visit]]:
        """Changes as (kind, visit): ("end", the identity's previous visit, when this sighting is beyond
        the gap), then ("new", visit) or ("update", visit). Nothing for a sighting without an identity."""
        pid = _identity(sighting)
        if pid is None:
            return []
        start = float(sighting.get("start_time") or sighting.get("end_time") or 0.0)
        end = float(sighting.get("end_time") or start)
        part = (start, max(start, end), str(sighting.get("camera") or "?"),
                str(sighting.get("sighting_id") or sighting.get("event_id")))  # fmt: skip
        changes: list[tuple[str, Visit]] = []
        visit = self.open.get(pid)
        if visit is not None and (
            part[0] > visit.end_time + self.gap_s or part[1] < visit.start_time - self.gap_s
        ):
            visit.ended = True
            changes.append(("end", self.open.pop(pid)))
            visit = None
        expires = sighting.get("expires_at")
        if visit is None:
            visit = Visit(
                f"visit-{part[3]}", pid, sighting.get("identity"), sighting.get("identity_class"),
                PERSON if sighting.get("label", PERSON) == PERSON else "vehicle", part[0], part[1],
                float(expires) if isinstance(expires, int | float) else None, [part],
            )  # fmt: skip
            self.open[pid] = visit
            return [*changes, ("new", visit)]
        if part[3] in {p[3] for p in visit.parts}:
            return changes  # the same sighting again (a replay): nothing new
        visit.parts.append(part)
        visit.parts.sort()
        visit.start_time, visit.end_time = min(visit.start_time, part[0]), max(visit.end_time, part[1])
        visit.name = sighting.get("identity") or visit.name
        visit.identity_class = sighting.get("identity_class") or visit.identity_class
        if visit.expires_at is not None:  # one sighting kept for good keeps the visit for good
            visit.expires_at = (
                max(visit.expires_at, float(expires)) if isinstance(expires, int | float) else None
            )
        return [*changes, ("update", visit)]

    def close_due(self, now: float) -> list[Visit]:
        """End the visits nobody of which was seen for longer than the gap before `now`."""
        due = [pid for pid, visit in self.open.items() if now - visit.end_time > self.gap_s]
        out = []
        for pid in due:
            visit = self.open.pop(pid)
            visit.ended = True
            out.append(visit)
        return out

    def close_all(self) -> list[Visit]:
        return self.close_due(float("inf"))


def build_visits(
    sightings: Iterable[dict[str, Any]], gap_s: float = DEFAULT_GAP_S, until: float | None = None
) -> list[Visit]:
    """Visits from sightings in any order (fed as their tracks ended), oldest first; those still
    within the gap of `until` (None: all closed) stay open (`ended` False)."""
    builder = VisitBuilder(gap_s)
    done: list[Visit] = []
    # In the order tracks end, as the daemon sees them: the same visits, with the same ids.
    ordered = sorted(sightings, key=lambda s: (float(s.get("end_time") or s.get("start_time") or 0.0),
                                               str(s.get("sighting_id"))))  # fmt: skip
    for sighting in ordered:
        done += [visit for kind, visit in builder.add(sighting) if kind == "end"]
    done += builder.close_all() if until is None else builder.close_due(until)
    done += list(builder.open.values())
    return sorted(done, key=lambda v: (v.start_time, v.id))
