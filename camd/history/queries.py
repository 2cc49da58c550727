"""The questions `camd search|visits|digest` ask, on an IdentityService's memory: the same functions
answer the CLI directly (daemon stopped) and the control API (daemon running)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from camd.history.digest import digest
from camd.history.search import SearchQuery, check_camera, check_person, search
from camd.history.visits import Visit, build_visits
from camd.history.when import TimeRange, day_range
from camd.identity.service import IdentityService
from camd.identity.sightings import SightingLog

MAX_SHEET_CROP_BYTES = 200_000  # a crop bigger than this is not a camd crop: left out of a sheet


def search_sightings(
    service: IdentityService, query: SearchQuery, with_crops: bool = False
) -> dict[str, Any]:
    """`search` over the service's memory; with_crops: each result's crop as base64 JPEG (`crop_jpeg`),
    for a contact sheet made where the crop files cannot be read."""
    answer = search(service.memory, query, _cameras(service))
    if with_crops:
        for row in answer["results"]:
            row["crop_jpeg"] = crop_base64(row.get("crop"))
    return answer


def _cameras(service: IdentityService) -> list[str]:
    """The configured cameras (not the CLI's placeholder when it runs without a config)."""
    return [name for name in service.config.cameras if name != "cli"]


def list_visits_for(service: IdentityService, params: dict[str, Any]) -> dict[str, Any]:
    """`list_visits` from the API's parameters (class words as `camd search` takes them)."""
    classes = SearchQuery.build(classes=params.get("classes") or ()).classes
    return list_visits(
        service, TimeRange(params.get("after"), params.get("before")), params.get("person"), classes,
        params.get("camera"), params.get("gap_s"), int(params.get("limit") or 200),
    )  # fmt: skip


def crop_base64(path: str | None) -> str | None:
    if not path:
        return None
    try:
        file = Path(path)
        if not file.is_file() or file.stat().st_size > MAX_SHEET_CROP_BYTES:
            return None
        return base64.b64encode(file.read_bytes()).decode()
    except OSError:
        return None


def _overlapping(base: str, start_column: str, span: TimeRange, gap_s: float,
                 person: str | None) -> tuple[str, tuple[Any, ...]]:  # fmt: skip
    """A WHERE clause (and its arguments) for rows of `person` overlapping `span` widened by the gap."""
    where: list[str] = [base]
    args: list[Any] = []
    if person is not None:
        where.append("person_id = ?")
        args.append(person)
    if span.after is not None:
        where.append("end_time >= ?")
        args.append(span.after - gap_s)
    if span.before is not None:
        where.append(f"{start_column} <= ?")
        args.append(span.before + gap_s)
    return " AND ".join(where), tuple(args)


def visits_in(log: SightingLog, span: TimeRange, gap_s: float, person: str | None = None) -> list[Visit]:
    """The visits overlapping `span`: those the daemon recorded, and for sightings no recorded visit
    holds (a log made without the daemon, or before visits were kept), visits built from them."""
    where, args = _overlapping("1", "start_time", span, gap_s, person)
    stored = [Visit.from_dict(row) for row in log.visits(where, args)]
    covered = {sid for visit in stored for _, _, _, sid in visit.parts}
    where, args = _overlapping("person_id IS NOT NULL", "json_extract(payload, '$.start_time')", span, gap_s,
                               person)  # fmt: skip
    loose = [s for s in log.select(where, args) if s.get("sighting_id") not in covered]
    built = build_visits(loose, gap_s)
    every = [v for v in stored + built if span.contains(v.start_time) or span.contains(v.end_time)
             or (span.after is not None and v.start_time <= span.after and
                 (span.before is None or v.end_time >= span.before))]  # fmt: skip
    return sorted(every, key=lambda v: (v.start_time, v.id))


def list_visits(
    service: IdentityService,
    span: TimeRange,
    person: str | None = None,
    classes: tuple[str, ...] = (),
    camera: str | None = None,
    gap_s: float | None = None,
    limit: int = 200,
) -> dict[str, Any]:
    memory = service.memory
    if person is not None:
        check_person(memory, person)
    gap = service.config.history.visit_gap_s if gap_s is None else gap_s
    if camera is not None:
        check_camera(memory, camera, _cameras(service))
    found = visits_in(memory.log, span, gap, person)
    if classes:
        found = [v for v in found if v.identity_class in classes]
    if camera is not None:
        found = [v for v in found if camera in v.cameras]
    now = time.time()
    for visit in found:  # past its gap: over, though no daemon has ended it yet (a log made offline)
        visit.ended = visit.ended or now - visit.end_time > gap
    return {"gap_s": gap, "span": span.as_dict(), "visits": [v.to_dict() for v in found[-limit:]]}


def day_digest(service: IdentityService, day: str | None = None) -> dict[str, Any]:
    span, date = day_range(day)
    memory = service.memory
    visits = visits_in(memory.log, span, service.config.history.visit_gap_s)
    sightings = memory.log.select("end_time >= ? AND end_time <= ?", (span.after, span.before))
    return digest(date, float(span.after or 0.0), float(span.before or 0.0), visits, sightings, memory.log)
