"""Serve the control API from a thread inside the daemon (uvicorn on a socket bound here, so a
taken port is a clear error at start instead of a log line from a background thread)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from camd.config.schema import ApiConfig

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class ApiStartError(RuntimeError):
    """The API could not listen; the message says where and what to change."""


def socket_path(api: ApiConfig, state_dir: Path) -> Path | None:
    """The Unix socket to listen on, or None for host:port. A relative path is under state_dir."""
    if api.socket is None:
        return None
    return api.socket if api.socket.is_absolute() else Path(state_dir) / api.socket


def bind_tcp(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ApiStartError(f"control API: cannot resolve api.host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise ApiStartError(
            f"control API: cannot listen on {host}:{port}: {exc.strerror}; "
            "set api.port to a free port (or api.enabled: false)"
        ) from None
    sock.set_inheritable(False)
    return sock


def bind_unix(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ApiStartError(
                f"control API: {path} exists and is not a socket; remove it or change api.socket"
            )
        if _socket_answers(path):
            raise ApiStartError(f"control API: {path} is in use (another camd running?)")
        path.unlink()  # left behind by a camd that did not stop cleanly
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o660)  # the daemon's user and group; writes still need the token
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise ApiStartError(f"control API: cannot listen on {path}: {exc.strerror}") from None
    return sock


def _socket_answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


class ApiServer:
    """uvicorn in a daemon thread. start() returns once requests are served or raises ApiStartError."""

    def __init__(self, app: FastAPI, api: ApiConfig, state_dir: Path) -> None:
        self.app = app
        self.config = api
        self.unix_path = socket_path(api, state_dir)
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """Where it listens, for logs and clients: http://host:port or unix:PATH."""
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host, port = (self._socket.getsockname()[:2] if self._socket is not None
                      else (self.config.host, self.config.port))
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        self._socket = (bind_unix(self.unix_path) if self.unix_path is not None
                        else bind_tcp(self.config.host, self.config.port))
        config = uvicorn.Config(
            self.app,
            log_config=None,  # camd's logging: one line per event, level from config
            access_log=False,  # Prometheus polls /metrics: an access line each time is noise
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        sockets = [self._socket]
        self._thread = threading.Thread(
            target=self._serve, args=(self._server, sockets), name="camd-api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ApiStartError(f"control API did not start on {self.address} (see the log above)")
            time.sleep(0.02)
        log.info("control API on %s (OpenAPI at /openapi.json, docs at /docs)", self.address)

    @staticmethod
    def _serve(server: uvicorn.Server, sockets: list[socket.socket]) -> None:
        try:
            server.run(sockets=sockets)
        except BaseException:  # SystemExit included: uvicorn exits on a startup failure
            log.exception("control API stopped with an error")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("control API did not stop in time")
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.unix_path.unlink()
