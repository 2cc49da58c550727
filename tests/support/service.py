"""A real daemon on real footage with its control API, and a stand-in identity service.

Imported by the service tests directly (no fixture registration needed).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camd.config import Config
from camd.config.schema import ApiConfig, CameraConfig, ServiceConfig
from camd.daemon import Daemon


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bikes_clip(models_dir: Path) -> Path:
    return models_dir / "demo_bikes_clip" / "bikes.mp4"


def daemon_config(
    state_dir: Path, models_dir: Path, api: ApiConfig | None = None, stall_s: float = 60.0,
    cameras: dict[str, CameraConfig] | None = None,
) -> Config:
    """The bikes clip replayed forever at its own pace: a camera that stays online."""
    street = CameraConfig(url=str(bikes_clip(models_dir)), loop=True, realtime=True, detect_fps=5.0)
    return Config(
        state_dir=state_dir,
        models_dir=models_dir,
        cameras=cameras or {"street": street},
        api=api or ApiConfig(port=free_port()),
        service=ServiceConfig(stall_s=stall_s),
    )


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> Any:
    """Poll until condition() is truthy; fail naming `what` (a bound on waiting, not a speed check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s")


@contextmanager
def running_daemon(config: Config) -> Iterator[Daemon]:
    """A Daemon (no MQTT) in a thread until the block ends; yields once its services are up."""
    daemon = Daemon(config, mqtt=False)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run(install_signals=False)
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    thread = threading.Thread(target=run, name="test-daemon", daemon=True)
    thread.start()
    try:
        wait_for(lambda: errors or (daemon.services is not None and daemon.pipelines), "the daemon to start")
        if errors:
            raise errors[0]
        yield daemon
    finally:
        daemon.stop()
        thread.join(timeout=15)
    assert not thread.is_alive(), "the daemon did not stop"
    if errors:
        raise errors[0]


class MemoryIdentity:
    """A stand-in for the identity engine's service (which is being built separately): keeps
    people in a dict, decodes photos for real and refuses what is not an image."""

    def __init__(self) -> None:
        self.people: dict[str, dict[str, Any]] = {}
        self.corrections: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()

    def _get(self, name: str) -> dict[str, Any]:
        if name not in self.people:
            raise LookupError(f"nobody called {name!r} is enrolled")
        return self.people[name]

    def list_people(self) -> dict[str, Any]:
        with self._lock:
            return {"people": [{"name": n, **p} for n, p in sorted(self.people.items())]}

    def show_person(self, name: str) -> dict[str, Any]:
        with self._lock:
            return {"name": name, **self._get(name)}

    def enroll_photos(
        self, name: str, photos: list[bytes], category: str, kind: str = "person"
    ) -> dict[str, Any]:
        sizes = []
        for index, data in enumerate(photos):
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"photo {index + 1} is not an image camd can read (JPEG or PNG)")
            sizes.append([int(image.shape[1]), int(image.shape[0])])
        with self._lock:
            person = self.people.setdefault(name, {"category": category, "photos": 0})
            person["photos"] += len(photos)
            return {"name": name, "added": len(photos), "sizes": sizes}

    def rename(self, name: str, new_name: str) -> dict[str, Any]:
        with self._lock:
            person = self._get(name)
            if new_name in self.people:
                raise ValueError(f"{new_name!r} is already enrolled")
            self.people[new_name] = self.people.pop(name)
            return {"name": new_name, **person}

    def remove(self, name: str) -> dict[str, Any]:
        with self._lock:
            self._get(name)
            del self.people[name]
            return {"removed": name}

    def correct(self, sighting_id: str, name: str | None) -> dict[str, Any]:
        with self._lock:
            if name is not None:
                self._get(name)
            self.corrections.append((sighting_id, name))
            return {"sighting": sighting_id, "name": name}

    def forget(self, name: str) -> dict[str, Any]:
        with self._lock:
            self._get(name)
            del self.people[name]
            return {"forgotten": name, "sightings_deleted": 0}

    # camd.api.app.EnrollmentService and CorrectionService: the stand-in has no sightings and no
    # tracker, but reads an uploaded clip for real.

    def upload_dir(self) -> Path:
        if not hasattr(self, "_uploads"):
            import tempfile

            self._uploads = Path(tempfile.mkdtemp(prefix="camd-standin-uploads-"))
        return self._uploads

    def enroll_sighting(
        self, name: str, sighting_id: str, category: str, kind: str | None = None
    ) -> dict[str, Any]:
        raise LookupError(f"no sighting {sighting_id!r} (the stand-in records none)")

    def enroll_clip(
        self, name: str, clip: Path, category: str, kind: str = "person", track: int | None = None,
        start_s: float = 0.0, end_s: float | None = None, clip_name: str = "clip",
    ) -> dict[str, Any]:
        capture = cv2.VideoCapture(str(clip))
        ok = capture.isOpened() and capture.read()[0]
        capture.release()
        if not ok:
            raise ValueError(f"{clip_name}: unreadable (not a video camd can decode)")
        with self._lock:
            person = self.people.setdefault(name, {"category": category, "photos": 0})
            person["clips"] = person.get("clips", 0) + 1
            return {"name": name, "clip": clip_name, "track": track}

    def correct_not(self, sighting_id: str, not_name: str) -> dict[str, Any]:
        with self._lock:
            self._get(not_name)
            self.corrections.append((sighting_id, f"not {not_name}"))
            return {"sighting": sighting_id, "not": not_name}

    def export_person(self, name: str) -> bytes:
        with self._lock:
            return json.dumps({"person": name, **self._get(name)}).encode()

    def reembed(self) -> dict[str, Any]:
        with self._lock:
            people = sorted(self.people)
        return {"body_model": "stand-in", "prototypes": 0, "people": people, "missing_crops": [],
                "seconds": 0.0}

    def sightings(self, name: str | None, camera: str | None, limit: int) -> dict[str, Any]:
        with self._lock:
            if name is not None:
                self._get(name)
            return {"sightings": []}

    # camd.api.history.HistoryService: the real parsing of the user's words, an empty memory.

    def search(self, params: dict[str, Any], with_crops: bool = False) -> dict[str, Any]:
        from camd.history.search import SearchQuery

        query = SearchQuery.build(**params)  # ValueError for words it cannot read
        if query.person is not None:
            self._get(query.person)
        return {"query": query.as_dict(), "candidates": None, "results": [], "took_ms": 0.0}

    def visits(self, params: dict[str, Any]) -> dict[str, Any]:
        from camd.history.search import SearchQuery

        SearchQuery.build(classes=params.get("classes") or ())
        if params.get("person") is not None:
            self._get(params["person"])
        return {"gap_s": params.get("gap_s") or 600.0, "visits": []}

    def digest(self, day: str | None) -> dict[str, Any]:
        from camd.history.when import day_range

        _, date = day_range(day)
        return {"day": date, "summary": "0 visits: nobody seen", "lines": ["Nobody was seen."]}
