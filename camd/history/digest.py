"""A day in a few readable lines: family arrivals and departures, visitors, strangers (with how often
each was seen before), unknown vehicles, and what each camera saw."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from camd.history.visits import Visit
from camd.identity.sightings import SightingLog

MAX_LISTED = 6  # strangers or vehicles named one by one; the rest are counted


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M")


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60.0)
    if minutes < 1:
        return f"{round(seconds)} s"
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def digest(
    day: str, start: float, end: float, visits: list[Visit], sightings: list[dict[str, Any]], log: SightingLog
) -> dict[str, Any]:
    """The digest of [start, end] (one local day, named `day`) from its visits and sightings."""
    by_class: dict[str, list[Visit]] = defaultdict(list)
    for visit in visits:
        by_class[visit.identity_class or "undecided"].append(visit)
    lines: list[str] = []
    when = datetime.fromtimestamp(start).strftime("%A %d %B %Y")
    people = {v.person_id for v in visits if v.kind == "person"}
    vehicles = {v.person_id for v in visits if v.kind == "vehicle"}
    lines.append(f"{when}: {_plural(len(visits), 'visit')} by {_plural(len(people), 'person')}"
                 .replace("1 persons", "1 person").replace("persons", "people")
                 + (f" and {_plural(len(vehicles), 'vehicle')}" if vehicles else "") + ".")  # fmt: skip
    for role, title in (("family", "Family"), ("visitor", "Visitors"), ("known_vehicle", "Our vehicles")):
        group = _by_person(by_class.get(role, []))
        if group:
            lines.append(f"{title}: " + "; ".join(
                f"{who} " + ", ".join(_span(v) for v in stays) for who, stays in group.items()
            ) + ".")  # fmt: skip
    strangers = _by_person(by_class.get("stranger", []))
    if strangers:
        before = _seen_before(log, list(strangers), start)
        # The most telling first: those seen on earlier days, then those who came most often today.
        ordered = sorted(strangers, key=lambda who: (-before.get(who, 0), -len(strangers[who])))
        parts = []
        for who in ordered[:MAX_LISTED]:
            earlier = before.get(who, 0)
            history = f"seen on {_plural(earlier, 'earlier day')}" if earlier else "first time"
            parts.append(f"{who} {', '.join(_span(v) for v in strangers[who][:3])} ({history})")
        more = len(ordered) - MAX_LISTED
        tail = (
            f"; and {more} more, {sum(1 for w in ordered[MAX_LISTED:] if before.get(w))} of them seen before"
        )
        lines.append(f"Strangers ({len(strangers)}): " + "; ".join(parts) + (tail if more > 0 else "") + ".")
    unknown_cars = _by_person(by_class.get("unknown_vehicle", []))
    if unknown_cars:
        shown = list(unknown_cars.items())[:MAX_LISTED]
        more = len(unknown_cars) - len(shown)
        lines.append(
            f"Unknown vehicles ({len(unknown_cars)}): "
            + "; ".join(f"{who} {', '.join(_span(v) for v in stays[:3])}" for who, stays in shown)
            + (f"; and {more} more" if more > 0 else "")
            + "."
        )
    per_camera: dict[str, Counter[str]] = defaultdict(Counter)
    for sighting in sightings:
        per_camera[str(sighting.get("camera"))][sighting.get("identity_class") or "undecided"] += 1
    for camera in sorted(per_camera):
        counts = per_camera[camera]
        detail = ", ".join(f"{n} {cls.replace('_', ' ')}" for cls, n in counts.most_common())
        lines.append(f"{camera}: {_plural(sum(counts.values()), 'sighting')} ({detail}).")
    if not visits and not sightings:
        lines.append("Nobody was seen.")
    counts = {cls: len({v.person_id for v in group}) for cls, group in by_class.items()}
    summary = ", ".join(f"{n} {cls.replace('_', ' ')}" for cls, n in sorted(counts.items())) or "nobody seen"
    return {
        "day": day,
        "summary": f"{_plural(len(visits), 'visit')}: {summary}"[:250],
        "text": "\n".join(lines),
        "lines": lines,
        "counts": counts,
        "visitors": counts.get("visitor", 0) + counts.get("stranger", 0),
        "visits": [v.to_dict() for v in visits],
    }


def _by_person(visits: list[Visit]) -> dict[str, list[Visit]]:
    out: dict[str, list[Visit]] = defaultdict(list)
    for visit in sorted(visits, key=lambda v: v.start_time):
        out[visit.name or visit.person_id].append(visit)
    return dict(out)


def _span(visit: Visit) -> str:
    arrival = f"{_clock(visit.start_time)} at {visit.arrival_camera}"
    if visit.duration_s < 60 and visit.departure_camera == visit.arrival_camera:
        return arrival
    return (
        f"{arrival} to {_clock(visit.end_time)} at {visit.departure_camera} ({_duration(visit.duration_s)})"
    )


def _seen_before(log: SightingLog, person_ids: list[str], before: float) -> dict[str, int]:
    """Per identity, on how many earlier local days it has sightings (kept ones: within retention)."""
    out: dict[str, int] = {}
    for pid in person_ids:
        rows = log.select("person_id = ? AND end_time < ?", (pid, before))
        out[pid] = len(
            {datetime.fromtimestamp(float(r["end_time"])).date() for r in rows if r.get("end_time")}
        )
    return out
