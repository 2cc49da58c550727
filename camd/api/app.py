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
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeVar, runtime_checkable

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from camd import __version__
from camd.api.identity import Category, IdentityBackend
from camd.api.status import METRICS_CONTENT_TYPE, DaemonView, health_report, metrics_text
from camd.private import open_private

if TYPE_CHECKING:
    from camd.service.watchdog import PipelineWatchdog

log = logging.getLogger(__name__)

# A person's name as it appears in a URL: no slashes or control characters.
NAME_PATTERN = r"^[^/\\\x00-\x1f\x7f]+$"
MAX_NAME = 64
MAX_PHOTOS = 50
MAX_PHOTO_B64 = 14_000_000  # ~10 MB image

Kind = Literal["person", "vehicle"]
PersonName = Annotated[str, Path(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)]
SightingId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


class ControlApi:
    """What the routes read. `identity` may be attached after the daemon starts."""

    def __init__(
        self,
        daemon: DaemonView,
        token: str,
        watchdog: PipelineWatchdog | None = None,
        identity: IdentityBackend | None = None,
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
    kind: Kind = "person"


class RenameRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)


class CorrectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str | None = Field(
        default=None, min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN,
        description="who it really was; null: nobody enrolled",
    )
    not_name: str | None = Field(
        default=None, alias="not", min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN,
        description="who it was not: refused unless camd matched the sighting to this name",
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


def identity_backend(request: Request) -> IdentityBackend:
    service = _control(request).identity
    if service is None:
        raise HTTPException(
            503, "the identity service is not running in this daemon, so people cannot be "
                 "listed or changed through it (is identity enabled in the config?)",
        )
    return service


# What a people route gets: the daemon's identity engine behind the control API (503 when off).
Backend = Annotated[IdentityBackend, Depends(identity_backend)]
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
    def list_people(service: Backend) -> dict[str, Any]:
        return _call(lambda: service.list_people())

    @app.get("/api/people/{name}", tags=["people"], dependencies=AUTHED, responses=_ERRORS)
    def show_person(name: PersonName, service: Backend) -> dict[str, Any]:
        return _call(lambda: service.show_person(name))

    @app.post("/api/people/{name}/photos", tags=["people"], dependencies=AUTHED, responses=_ERRORS)
    def enroll_photos(name: PersonName, body: EnrollRequest, service: Backend) -> dict[str, Any]:
        """Enroll (or add to) a person, or with `kind: vehicle` a vehicle, from photos."""
        photos = [_decode(photo) for photo in body.photos]
        log.info("api: enroll %r (%s %s) from %d photo(s)", name, body.category, body.kind, len(photos))
        if body.kind == "vehicle":
            vehicles = _capable(service, EnrollmentService, "enroll a vehicle")
            return _call(lambda: vehicles.enroll_photos(name, photos, body.category, kind="vehicle"))
        return _call(lambda: service.enroll_photos(name, photos, body.category))

    @app.patch("/api/people/{name}", tags=["people"], dependencies=AUTHED, responses=_ERRORS)
    def rename(name: PersonName, body: RenameRequest, service: Backend) -> dict[str, Any]:
        log.info("api: rename %r to %r", name, body.new_name)
        return _call(lambda: service.rename(name, body.new_name))

    @app.delete("/api/people/{name}", tags=["people"], dependencies=AUTHED, responses=_ERRORS)
    def remove(name: PersonName, service: Backend) -> dict[str, Any]:
        log.info("api: remove %r", name)
        return _call(lambda: service.remove(name))

    @app.post("/api/people/{name}/forget", tags=["people"], dependencies=AUTHED, responses=_ERRORS)
    def forget(name: PersonName, service: Backend) -> dict[str, Any]:
        """Erase everything stored about the person, sightings included."""
        log.info("api: forget %r", name)
        return _call(lambda: service.forget(name))

    @app.get("/api/people/{name}/export", tags=["people"], dependencies=AUTHED, response_class=Response,
             responses={**_ERRORS, 200: {"content": {"application/zip": {}},
                                         "description": "the bundle `camd people export` writes"}})
    def export_person(name: PersonName, service: Backend) -> Response:
        """Everything stored about the person (record, prototypes, sightings with crops, corrections)."""
        log.info("api: export %r", name)
        data = _call(lambda: service.export_person(name))
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="camd-export.zip"'})

    @app.post("/api/memory/reembed", tags=["people"], dependencies=AUTHED, responses=_ERRORS)
    def reembed(service: Backend) -> dict[str, Any]:
        """Embed every enrolled person's kept crops again with the body model in use."""
        log.info("api: re-embed the enrolled people's kept crops")
        return _call(service.reembed)

    @app.post("/api/sightings/{sighting_id}/correct", tags=["sightings"], dependencies=AUTHED,
              responses=_ERRORS)
    def correct(sighting_id: SightingId, body: CorrectRequest, service: Backend) -> dict[str, Any]:
        """`name`: who it really was. `not`: who it was not (only for a sighting matched to that name).
        Neither: it was nobody enrolled, whoever it was matched to."""
        if body.name is not None and body.not_name is not None:
            raise HTTPException(400, "give `name` (who it was) or `not` (who it was not), not both")
        if body.not_name is not None:
            log.info("api: correct sighting %s: not %r", sighting_id, body.not_name)
            negative = _capable(service, CorrectionService, "say who a sighting was not")
            return _call(lambda: negative.correct_not(sighting_id, body.not_name))  # type: ignore[arg-type]
        log.info("api: correct sighting %s to %r", sighting_id, body.name)
        return _call(lambda: service.correct(sighting_id, body.name))

    @app.get("/api/sightings", tags=["sightings"], dependencies=AUTHED, responses=_ERRORS)
    def sightings(
        service: Backend,
        person: Annotated[str | None, Query(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)] = None,
        camera: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        return _call(lambda: service.sightings(person, camera, limit))

    _add_enrollment_routes(app)
    from camd.api.history import add_history_routes  # imports this module's helpers

    add_history_routes(app)
    return app


# -- enrollment from a sighting or a clip, and vehicles --------------------------------------------------

MAX_CLIP_BYTES = 256 * 1024 * 1024  # a short clip of one person; a longer video should be cut first
TOO_BIG = (
    f"the clip is larger than {MAX_CLIP_BYTES >> 20} MiB: cut out the part that shows the person, e.g. "
    "ffmpeg -ss START -t SECONDS -i in.mp4 -c copy part.mp4"
)


@runtime_checkable
class EnrollmentService(Protocol):
    """What an identity service offers beyond camd.api.identity.IdentityBackend to enroll through the
    daemon from what only it holds (sightings) or reads (an uploaded clip), and vehicles."""

    def upload_dir(self) -> FilePath:
        """A private folder on the daemon's side for uploads being processed."""
        ...

    def enroll_photos(
        self, name: str, photos: list[bytes], category: str, kind: str = "person"
    ) -> dict[str, Any]: ...

    def enroll_sighting(
        self, name: str, sighting_id: str, category: str, kind: str | None = None
    ) -> dict[str, Any]:
        """LookupError for an unknown sighting; ValueError when it holds nothing to enroll."""
        ...

    def enroll_clip(
        self, name: str, clip: FilePath, category: str, kind: str = "person", track: int | None = None,
        start_s: float = 0.0, end_s: float | None = None, clip_name: str = "clip",
    ) -> dict[str, Any]:
        """ValueError for a clip without a usable track; a ValueError with a `tracks` attribute (each
        with `track`, `frames`, `faces`, `first_seen_s`, `crop_jpeg`) when several tracks need a choice."""
        ...


@runtime_checkable
class CorrectionService(Protocol):
    def correct_not(self, sighting_id: str, not_name: str) -> dict[str, Any]:
        """"It was not NAME"; ValueError unless the sighting was matched to NAME."""
        ...


class SightingEnrollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sighting: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$",
                          description="the sighting (event) id camd recorded")  # fmt: skip
    category: Category = "family"
    kind: Kind | None = Field(default=None, description="when given, must be the sighting's kind")


def _capable(service: IdentityBackend, protocol: type[Any], what: str) -> Any:
    if not isinstance(service, protocol):
        raise HTTPException(501, f"this daemon's identity service cannot {what} through the API")
    return service


def _add_enrollment_routes(app: FastAPI) -> None:
    @app.post("/api/people/{name}/sighting", tags=["people"], dependencies=AUTHED, responses=_ERRORS)
    def enroll_sighting(name: PersonName, body: SightingEnrollRequest, service: Backend) -> dict[str, Any]:
        """Enroll (or add to) a person or vehicle from a sighting the daemon recorded."""
        enrolling = _capable(service, EnrollmentService, "enroll from a sighting")
        log.info("api: enroll %r (%s) from sighting %s", name, body.category, body.sighting)
        return _call(lambda: enrolling.enroll_sighting(name, body.sighting, body.category, body.kind))

    @app.post(
        "/api/people/{name}/clip", tags=["people"], dependencies=AUTHED,
        responses={**_ERRORS, 409: {"description": "several tracks: choose one with `track`; `detail` "
                                    "lists them, each with a JPEG crop (base64)"},
                   413: {"description": f"the clip is larger than {MAX_CLIP_BYTES >> 20} MiB"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    )  # fmt: skip
    async def enroll_clip(
        name: PersonName,
        request: Request,
        service: Backend,
        category: Category = "family",
        kind: Kind = "person",
        track: Annotated[int | None, Query(ge=0)] = None,
        start: Annotated[float, Query(ge=0.0)] = 0.0,
        end: Annotated[float | None, Query(gt=0.0)] = None,
        filename: Annotated[str, Query(min_length=1, max_length=255)] = "clip.mp4",
    ) -> dict[str, Any]:
        """Enroll from a video clip sent as the request body (the file's bytes). The daemon tracks
        every person (or vehicle) in it; with several and no `track`, answers 409 listing them."""
        enrolling = _capable(service, EnrollmentService, "enroll from a clip")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_CLIP_BYTES:
            raise HTTPException(413, TOO_BIG)
        suffix = "".join(c for c in FilePath(filename).suffix[:8] if c.isalnum() or c == ".") or ".mp4"
        folder = await run_in_threadpool(enrolling.upload_dir)
        path = folder / f"upload-{secrets.token_hex(8)}{suffix}"
        try:
            await _receive(request, path)
            log.info("api: enroll %r (%s %s) from an uploaded clip %r (%d bytes)", name, category, kind,
                     filename, path.stat().st_size)  # fmt: skip
            try:
                return await run_in_threadpool(
                    enrolling.enroll_clip, name, path, category, kind, track, start, end, filename
                )
            except ValueError as exc:
                tracks = getattr(exc, "tracks", None)
                if tracks is None:
                    raise HTTPException(400, _message(exc)) from None
                raise HTTPException(409, {"message": _message(exc), "tracks": tracks}) from None
            except LookupError as exc:
                raise HTTPException(404, _message(exc)) from None
        finally:
            path.unlink(missing_ok=True)


async def _receive(request: Request, path: FilePath) -> None:
    """Stream the request body to `path` (owner-only), refusing more than MAX_CLIP_BYTES."""
    size = 0
    with open_private(path, exclusive=True) as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_CLIP_BYTES:
                raise HTTPException(413, TOO_BIG)
            out.write(chunk)
    if size == 0:
        raise HTTPException(400, "no clip: send the video file's bytes as the request body")


def _decode(photo: Photo) -> bytes:
    try:
        data = base64.b64decode(photo.data, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, f"photo {photo.filename!r}: data is not valid base64") from None
    if not data:
        raise HTTPException(400, f"photo {photo.filename!r} is empty")
    return data


_Answer = TypeVar("_Answer")  # what an identity call returns: a dict, or bytes for a file


def _call(action: Callable[[], _Answer]) -> _Answer:
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
