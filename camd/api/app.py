"""The control API's routes (FastAPI): health, metrics, and the people calls the CLI makes while
the daemon holds the store.

Reads of health and metrics are open (local monitoring, Prometheus); every /api call needs the
bearer token, reads included, because names and sightings are personal data.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from camd import __version__
from camd.api.identity import Category, IdentityService
from camd.api.status import METRICS_CONTENT_TYPE, DaemonView, health_report, metrics_text

if TYPE_CHECKING:
    from camd.service.watchdog import PipelineWatchdog

log = logging.getLogger(__name__)

# A person's name as it appears in a URL: no slashes or control characters.
NAME_PATTERN = r"^[^/\\\x00-\x1f\x7f]+$"
MAX_NAME = 64
MAX_PHOTOS = 50
MAX_PHOTO_B64 = 14_000_000  # ~10 MB image

PersonName = Annotated[str, Path(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)]
SightingId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


class ControlApi:
    """What the routes read. `identity` may be attached after the daemon starts."""

    def __init__(
        self,
        daemon: DaemonView,
        token: str,
        watchdog: PipelineWatchdog | None = None,
        identity: IdentityService | None = None,
    ) -> None:
        self.daemon = daemon
        self.token = token
        self.watchdog = watchdog
        self.identity = identity
        self.started_at = time.monotonic()


class ErrorBody(BaseModel):
    detail: str


class Photo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field(default="photo", max_length=255)
    data: str = Field(
        min_length=4, max_length=MAX_PHOTO_B64, description="the image file (JPEG, PNG), base64"
    )


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    photos: list[Photo] = Field(min_length=1, max_length=MAX_PHOTOS)
    category: Category = "family"


class RenameRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)


class CorrectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(
        default=None, min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN,
        description="who it really was; null: nobody enrolled",
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "the request was understood but refused (bad photo, name taken, ...)"),
        (401, "no token: send Authorization: Bearer <contents of <state_dir>/api-token>"),
        (403, "wrong token"),
        (404, "no such person or sighting"),
        (503, "the identity service is not running in this daemon"),
    )
}
_bearer = HTTPBearer(auto_error=False, description="the token in <state_dir>/api-token")


def _control(request: Request) -> ControlApi:
    control: ControlApi = request.app.state.control
    return control


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, _ERRORS[401]["description"], headers={"WWW-Authenticate": "Bearer"})
    if not secrets.compare_digest(credentials.credentials.encode(), _control(request).token.encode()):
        log.warning("api: a call with a wrong token was refused")
        raise HTTPException(403, "wrong token: read it from <state_dir>/api-token")


def identity_service(request: Request) -> IdentityService:
    service = _control(request).identity
    if service is None:
        raise HTTPException(
            503, "the identity service is not running in this daemon, so people cannot be "
                 "listed or changed through it (is identity enabled in the config?)",
        )
    return service


Identity = Annotated[IdentityService, Depends(identity_service)]
AUTHED: list[Any] = [Depends(require_token)]


def create_app(control: ControlApi) -> FastAPI:
    app = FastAPI(
        title="camd control API",
        version=__version__,
        description="Health, metrics and the household's people, for the camd CLI and local tools.",
    )
    app.state.control = control

    @app.get("/health", tags=["monitoring"], responses={503: {"description": "the pipeline has stalled"}})
    def health() -> JSONResponse:
        """Per camera: state, frames/s, age of the last frame; overall status."""
        report = health_report(control.daemon, control.watchdog, control.started_at)
        return JSONResponse(report, status_code=503 if report["status"] == "stalled" else 200)

    @app.get("/metrics", tags=["monitoring"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus text format."""
        text = metrics_text(control.daemon, control.watchdog, control.started_at)
        return PlainTextResponse(text, media_type=METRICS_CONTENT_TYPE)

    @app.get("/api/people", tags=["people"], dependencies=AUTHED, responses=_ERRORS)
    def list_people(service: Identity) -> dict[str, Any]:
        return _call(lambda: service.list_people())

    @app.get("/api/people/{name}", tags=["people"], dependencies=AUTHED, responses=_ERRORS)
    def show_person(name: PersonName, service: Identity) -> dict[str, Any]:
        return _call(lambda: service.show_person(name))

    @app.post("/api/people/{name}/photos", tags=["people"], dependencies=AUTHED, responses=_ERRORS)
    def enroll_photos(name: PersonName, body: EnrollRequest, service: Identity) -> dict[str, Any]:
        """Enroll (or add to) a person from photos."""
        photos = [_decode(photo) for photo in body.photos]
        log.info("api: enroll %r (%s) from %d photo(s)", name, body.category, len(photos))
        return _call(lambda: service.enroll_photos(name, photos, body.category))

    @app.patch("/api/people/{name}", tags=["people"], dependencies=AUTHED, responses=_ERRORS)
    def rename(name: PersonName, body: RenameRequest, service: Identity) -> dict[str, Any]:
        log.info("api: rename %r to %r", name, body.new_name)
        return _call(lambda: service.rename(name, body.new_name))

    @app.delete("/api/people/{name}", tags=["people"], dependencies=AUTHED, responses=_ERRORS)
    def remove(name: PersonName, service: Identity) -> dict[str, Any]:
        log.info("api: remove %r", name)
        return _call(lambda: service.remove(name))

    @app.post("/api/people/{name}/forget", tags=["people"], dependencies=AUTHED, responses=_ERRORS)
    def forget(name: PersonName, service: Identity) -> dict[str, Any]:
        """Erase everything stored about the person, sightings included."""
        log.info("api: forget %r", name)
        return _call(lambda: service.forget(name))

    @app.post("/api/sightings/{sighting_id}/correct", tags=["sightings"], dependencies=AUTHED,
              responses=_ERRORS)
    def correct(sighting_id: SightingId, body: CorrectRequest, service: Identity) -> dict[str, Any]:
        log.info("api: correct sighting %s to %r", sighting_id, body.name)
        return _call(lambda: service.correct(sighting_id, body.name))

    @app.get("/api/sightings", tags=["sightings"], dependencies=AUTHED, responses=_ERRORS)
    def sightings(
        service: Identity,
        person: Annotated[str | None, Query(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)] = None,
        camera: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        return _call(lambda: service.sightings(person, camera, limit))

    return app


def _decode(photo: Photo) -> bytes:
    try:
        data = base64.b64decode(photo.data, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, f"photo {photo.filename!r}: data is not valid base64") from None
    if not data:
        raise HTTPException(400, f"photo {photo.filename!r} is empty")
    return data


def _call(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Identity errors become answers: LookupError 404, ValueError 400 (messages are for users)."""
    try:
        return action()
    except LookupError as exc:
        raise HTTPException(404, _message(exc)) from None
    except ValueError as exc:
        raise HTTPException(400, _message(exc)) from None


def _message(exc: BaseException) -> str:
    # KeyError's str() adds quotes around its argument
    return str(exc.args[0]) if exc.args and isinstance(exc.args[0], str) else str(exc) or type(exc).__name__
