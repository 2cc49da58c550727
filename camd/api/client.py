"""The CLI's side of the control API: talk to the running daemon instead of opening the store
(which the daemon holds)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from camd.api.auth import read_token
from camd.api.identity import Category
from camd.api.server import socket_path
from camd.config import Config
from camd.config.schema import ApiConfig

TIMEOUT_S = 60.0  # enrolment runs the face and body models on every photo
# A clip is decoded, detected and tracked frame by frame on the daemon (~0.2 s a sampled frame on a
# small hub, 5 frames a second of video): minutes for a long clip.
CLIP_TIMEOUT_S = 1800.0
MAX_CLIP_BYTES = 256 * 1024 * 1024  # the daemon's limit (camd.api.app.MAX_CLIP_BYTES)
UPLOAD_CHUNK = 1 << 20


class ApiError(RuntimeError):
    """The daemon answered with an error; `status` is the HTTP status, the message its detail, `detail`
    the answer's structured detail when it has one (a clip's tracks to choose from)."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class ApiUnavailable(ApiError):
    """No daemon answered at the configured address."""


class ApiClient:
    """Calls the API at `base_url` (http://host:port) or over a Unix socket (`unix_socket`)."""

    def __init__(self, base_url: str | None = None, token: str | None = None,
                 unix_socket: Path | None = None, timeout: float = TIMEOUT_S) -> None:
        if unix_socket is not None:
            transport = httpx.HTTPTransport(uds=str(unix_socket))
            self.where = f"unix:{unix_socket}"
            self._http = httpx.Client(base_url="http://camd", transport=transport, timeout=timeout)
        else:
            if base_url is None:
                raise ValueError("give base_url or unix_socket")
            self.where = base_url
            self._http = httpx.Client(base_url=base_url, timeout=timeout)
        self.token = token

    @classmethod
    def from_config(cls, config: Config, with_token: bool = True) -> ApiClient:
        """The daemon's API as its config describes it; the token from <state_dir>/api-token."""
        return cls.for_state_dir(config.state_dir, config.api, with_token)

    @classmethod
    def for_state_dir(
        cls, state_dir: Path, api: ApiConfig | None = None, with_token: bool = True
    ) -> ApiClient:
        """Without loading the whole config (which needs the camera secrets in the environment):
        the daemon's state_dir and its api section (default: 127.0.0.1:8765)."""
        api = api or ApiConfig()
        token = read_token(state_dir) if with_token else None
        unix = socket_path(api, state_dir)
        if unix is not None:
            return cls(token=token, unix_socket=unix)
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(api.host, api.host)  # a wildcard listens on loopback
        shown = f"[{host}]" if ":" in host else host
        return cls(f"http://{shown}:{api.port}", token=token)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- calls -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health", ok=(200, 503))

    def metrics(self) -> str:
        return self._send("GET", "/metrics").text

    def list_people(self) -> dict[str, Any]:
        return self._request("GET", "/api/people")

    def show_person(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/api/people/{_seg(name)}")

    def enroll_photos(
        self, name: str, photos: list[Path], category: Category = "family", kind: str = "person"
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "category": category,
            "photos": [{"filename": p.name, "data": base64.b64encode(Path(p).read_bytes()).decode()}
                       for p in photos],
        }
        if kind != "person":  # the field is newer than the route: leave it out when not needed
            body["kind"] = kind
        return self._request("POST", f"/api/people/{_seg(name)}/photos", json=body)

    def enroll_sighting(
        self, name: str, sighting_id: str, category: Category = "family", kind: str | None = None
    ) -> dict[str, Any]:
        body = {"sighting": sighting_id, "category": category, "kind": kind}
        return self._request("POST", f"/api/people/{_seg(name)}/sighting", json=body)

    def enroll_clip(
        self,
        name: str,
        clip: Path,
        category: Category = "family",
        kind: str = "person",
        track: int | None = None,
        start_s: float = 0.0,
        end_s: float | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Upload `clip` to the daemon, which tracks it and enrolls one track. `progress(sent, total)`
        follows the upload. Several tracks and no `track`: ApiError 409 whose `detail["tracks"]` lists
        them (with a base64 JPEG crop each)."""
        clip = Path(clip)
        if not clip.is_file():
            raise ValueError(f"{clip}: no such video file")
        size = clip.stat().st_size
        if size > MAX_CLIP_BYTES:
            raise ValueError(f"{clip} is larger than {MAX_CLIP_BYTES >> 20} MiB, the daemon's upload limit: "
                             "cut out the part that shows the person (or stop the daemon)")  # fmt: skip
        params: dict[str, Any] = {"category": category, "kind": kind, "start": start_s, "filename": clip.name}
        if track is not None:
            params["track"] = track
        if end_s is not None:
            params["end"] = end_s
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        return self._request(
            "POST", f"/api/people/{_seg(name)}/clip", params=params, headers=headers,
            content=_chunks(clip, size, progress), timeout=httpx.Timeout(TIMEOUT_S, read=CLIP_TIMEOUT_S),
        )  # fmt: skip

    def rename(self, name: str, new_name: str) -> dict[str, Any]:
        return self._request("PATCH", f"/api/people/{_seg(name)}", json={"new_name": new_name})

    def remove(self, name: str) -> dict[str, Any]:
        return self._request("DELETE", f"/api/people/{_seg(name)}")

    def forget(self, name: str) -> dict[str, Any]:
        return self._request("POST", f"/api/people/{_seg(name)}/forget")

    def reembed(self) -> dict[str, Any]:
        return self._request("POST", "/api/memory/reembed")

    def export_person(self, name: str) -> bytes:
        """Everything stored about `name`, as the zip `camd people export` writes."""
        return self._send("GET", f"/api/people/{_seg(name)}/export").content

    def correct(self, sighting_id: str, name: str | None, not_name: str | None = None) -> dict[str, Any]:
        """`name`: who it was; `not_name`: who it was not (the daemon refuses unless the sighting was
        matched to them); neither: nobody enrolled."""
        body = {"name": name} if not_name is None else {"not": not_name}
        return self._request("POST", f"/api/sightings/{_seg(sighting_id)}/correct", json=body)

    def sightings(
        self, person: str | None = None, camera: str | None = None, limit: int = 50
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if person is not None:
            params["person"] = person
        if camera is not None:
            params["camera"] = camera
        return self._request("GET", "/api/sightings", params=params)

    def search(self, params: dict[str, Any]) -> dict[str, Any]:
        """GET /api/sightings/search (camd.api.history): list values repeat their key."""
        return self._request("GET", "/api/sightings/search", params=_query(params))

    def visits(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._request("GET", "/api/visits", params=_query(params))

    def digest(self, day: str | None = None) -> dict[str, Any]:
        return self._request("GET", "/api/digest", params={"day": day} if day else {})

    # -- plumbing ----------------------------------------------------------------------------

    def _send(self, method: str, path: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(kwargs.pop("headers", None) or {})
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise ApiUnavailable(
                0, f"camd's control API does not answer at {self.where} ({exc}); is the daemon running "
                   "with api.enabled: true?"
            ) from None
        if response.status_code not in ok:
            raise ApiError(response.status_code, _detail(response), _structured(response))
        return response

    def _request(self, method: str, path: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._send(method, path, ok, **kwargs).json()
        return result


def _query(params: dict[str, Any]) -> list[tuple[str, Any]]:
    """Query parameters without the empty ones; a list becomes its key repeated."""
    out: list[tuple[str, Any]] = []
    for key, value in params.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None and item != "":
                out.append((key, str(item).lower() if isinstance(item, bool) else item))
    return out


def _seg(value: str) -> str:
    return quote(value, safe="")


def _structured(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("detail") if isinstance(body, dict) else None


def _detail(response: httpx.Response) -> str:
    detail = _structured(response)
    if isinstance(detail, list):  # a validation error: FastAPI lists each problem
        detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail)
    elif isinstance(detail, dict):  # e.g. a clip's tracks to choose from: the message says what to do
        detail = detail.get("message")
    return f"HTTP {response.status_code}: {detail or response.text[:200]}"


def _chunks(path: Path, size: int, progress: Callable[[int, int], None] | None) -> Iterator[bytes]:
    sent = 0
    with open(path, "rb") as source:
        while chunk := source.read(UPLOAD_CHUNK):
            sent += len(chunk)
            if progress is not None:
                progress(sent, size)
            yield chunk
