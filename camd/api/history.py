"""The history routes: search sightings, list visits, the day's digest (camd/history), for the CLI
while the daemon holds the store and for local tools. Times may be given in words (`since=yesterday`,
`between=14:00&between=16:00`, `last=2h`, read in the daemon's local time) or as epoch seconds
(`after`, `before`: what the CLI sends, having read the words in the user's)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, runtime_checkable

from fastapi import Depends, FastAPI, Query

from camd.api.app import _ERRORS, AUTHED, MAX_NAME, NAME_PATTERN, Backend, _call, _capable

log = logging.getLogger(__name__)

Words = Annotated[str | None, Query(min_length=1, max_length=100)]
Name = Annotated[str | None, Query(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)]
Camera = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]
# 501: an identity backend without history (a stand-in, an older engine behind the same API).
RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    501: {"description": "this daemon's identity service keeps no history"},
}


@runtime_checkable
class HistoryService(Protocol):
    """What an identity backend offers for history (camd.identity.api.IdentityApi implements it)."""

    def search(self, params: dict[str, Any], with_crops: bool = False) -> dict[str, Any]:
        """SearchQuery.build's arguments plus the time words; ValueError / LookupError as usual."""
        ...

    def visits(self, params: dict[str, Any]) -> dict[str, Any]: ...

    def digest(self, day: str | None) -> dict[str, Any]: ...


def _span(
    since: str | None,
    until: str | None,
    between: list[str],
    last: str | None,
    after: float | None,
    before: float | None,
) -> tuple[float | None, float | None]:
    from camd.history.when import time_range

    span = time_range(since=since, until=until, between=between or None, last=last)
    return (after if after is not None else span.after, before if before is not None else span.before)


@dataclass(frozen=True, slots=True)
class Where:
    """Who, where and when: the filters search and visits share."""

    person: str | None
    classes: list[str]
    camera: str | None
    since: str | None
    until: str | None
    between: list[str]
    last: str | None
    after: float | None
    before: float | None

    def params(self) -> dict[str, Any]:
        """The backend's filter arguments; the time words read here (ValueError when unreadable)."""
        start, end = _span(self.since, self.until, self.between, self.last, self.after, self.before)
        return {"person": self.person, "classes": self.classes, "camera": self.camera, "after": start,
                "before": end}  # fmt: skip


def where_query(
    person: Name = None,
    classes: Annotated[list[str], Query(alias="class", max_length=10)] = [],  # noqa: B006
    camera: Camera = None,
    since: Words = None,
    until: Words = None,
    between: Annotated[list[str], Query(max_length=2)] = [],  # noqa: B006
    last: Words = None,
    after: float | None = None,
    before: float | None = None,
) -> Where:
    return Where(person, classes, camera, since, until, between, last, after, before)


WhereQuery = Annotated[Where, Depends(where_query)]


def add_history_routes(app: FastAPI) -> None:
    @app.get("/api/sightings/search", tags=["history"], dependencies=AUTHED, responses=RESPONSES)
    def search(
        service: Backend,
        where: WhereQuery,
        wearing: Annotated[list[str], Query(max_length=4)] = [],  # noqa: B006
        upper: Words = None,
        lower: Words = None,
        like: Annotated[
            str | None, Query(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        crops: bool = False,
    ) -> dict[str, Any]:
        """Sightings by who (`person`: a name or unknown-N), `class` (family, visitor, stranger, known,
        unknown, vehicle), `camera`, time, what they wore (`wearing=red top`, or `upper` / `lower`
        colours) and `like` (the sightings nearest to that sighting's body or vehicle vector, on every
        camera). Newest first, or best first when ranked; `crops=true` adds each crop (base64 JPEG)."""
        history = _capable(service, HistoryService, "search sightings")

        def run() -> dict[str, Any]:
            params = {**where.params(), "wearing": wearing, "upper": upper, "lower": lower, "like": like,
                      "limit": limit}  # fmt: skip
            return history.search(params, with_crops=crops)

        return _call(run)

    @app.get("/api/visits", tags=["history"], dependencies=AUTHED, responses=RESPONSES)
    def visits(
        service: Backend,
        where: WhereQuery,
        gap: Annotated[float | None, Query(ge=0.0, le=86400.0)] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 200,
    ) -> dict[str, Any]:
        """Visits (one identity's sightings on any camera within the gap), oldest first."""
        history = _capable(service, HistoryService, "list visits")

        def run() -> dict[str, Any]:
            return history.visits({**where.params(), "gap_s": gap, "limit": limit})

        return _call(run)

    @app.get("/api/digest", tags=["history"], dependencies=AUTHED, responses=RESPONSES)
    def digest(service: Backend, day: Words = None) -> dict[str, Any]:
        """One day in a few lines (`day` in words or YYYY-MM-DD; today when absent)."""
        history = _capable(service, HistoryService, "write a digest")
        return _call(lambda: history.digest(day))
