"""The CLI's side of the control API: talk to the running daemon instead of opening the store
(which the daemon holds)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from camd.api.auth import read_token
from camd.api.identity import Category
from camd.api.server import socket_path
from camd.config import Config
from camd.config.models import ApiConfig

TIMEOUT_S = 60.0  # enrolment runs the face and body models on every photo


class ApiError(RuntimeError):
    """The daemon answered with an error; `status` is the HTTP status, the message its detail."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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

    def enroll_photos(self, name: str, photos: list[Path], category: Category = "family") -> dict[str, Any]:
        body = {
            "category": category,
            "photos": [{"filename": p.name, "data": base64.b64encode(Path(p).read_bytes()).decode()}
                       for p in photos],
        }
        return self._request("POST", f"/api/people/{_seg(name)}/photos", json=body)

    def rename(self, name: str, new_name: str) -> dict[str, Any]:
        return self._request("PATCH", f"/api/people/{_seg(name)}", json={"new_name": new_name})

    def remove(self, name: str) -> dict[str, Any]:
        return self._request("DELETE", f"/api/people/{_seg(name)}")

    def forget(self, name: str) -> dict[str, Any]:
        return self._request("POST", f"/api/people/{_seg(name)}/forget")

    def correct(self, sighting_id: str, name: str | None) -> dict[str, Any]:
        return self._request("POST", f"/api/sightings/{_seg(sighting_id)}/correct", json={"name": name})

    def sightings(
        self, person: str | None = None, camera: str | None = None, limit: int = 50
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if person is not None:
            params["person"] = person
        if camera is not None:
            params["camera"] = camera
        return self._request("GET", "/api/sightings", params=params)

    # -- plumbing ----------------------------------------------------------------------------

    def _send(self, method: str, path: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise ApiUnavailable(
                0, f"camd's control API does not answer at {self.where} ({exc}); is the daemon running "
                   "with api.enabled: true?"
            ) from None
        if response.status_code not in ok:
            raise ApiError(response.status_code, _detail(response))
        return response

    def _request(self, method: str, path: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._send(method, path, ok, **kwargs).json()
        return result


def _seg(value: str) -> str:
    return quote(value, safe="")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, list):  # a validation error: FastAPI lists each problem
        detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail)
    return f"HTTP {response.status_code}: {detail or response.text[:200]}"
