"""What adaptation learns from: the installation's own tracks, read from the sighting log and the crops on
disk (nothing else; no crop leaves the hub).

A track gives, for free:
- positives: its own crops (one person, one camera, a few seconds);
- negatives: tracks on the same camera at overlapping times (two people at once), and tracks that the
  memory knows to be different people (both confirmed: named by a face, or by the user with
  `camd correct --is`).
A confirmed person's tracks are positives across cameras.

A forgotten person (`camd forget`) has no sightings and no crops left, so nothing of them is read here.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camd.identity.layout import ROLES, STRANGER_PREFIXES

# A face this sure (the matcher's face evidence, 0..1) confirms who a track was.
FACE_CONFIRMS = 0.9


@dataclass(frozen=True)
class AdaptTrack:
    """One track's crops and what is known about who it was."""

    key: str  # the sighting id
    camera: str
    start: float
    end: float
    crops: tuple[np.ndarray, ...]  # BGR
    person: str | None = None  # confirmed identity (face or user), else None

    @property
    def label(self) -> str:
        """Who the track is for training: its confirmed person, else the track itself."""
        return f"person:{self.person}" if self.person is not None else f"track:{self.key}"


def known_different(a: AdaptTrack, b: AdaptTrack) -> bool:
    """True when two tracks are surely two different people."""
    if a.person is not None and b.person is not None:
        return a.person != b.person
    if a.person is not None and a.person == b.person:
        return False
    return a.key != b.key and a.camera == b.camera and a.start < b.end and b.start < a.end


def same_person(a: AdaptTrack, b: AdaptTrack) -> bool:
    return a.label == b.label


def confirmed(payload: dict[str, Any]) -> str | None:
    """The person a sighting surely shows: corrected by the user, or named by a sure face."""
    person = payload.get("person_id")
    if not person or str(person).startswith(STRANGER_PREFIXES):
        return None
    if payload.get("corrected"):
        return str(person)
    evidence = payload.get("evidence") or {}
    face = evidence.get("face") if isinstance(evidence, dict) else None
    if payload.get("identity_class") in ROLES and isinstance(face, int | float) and face >= FACE_CONFIRMS:
        return str(person)
    return None


def crop_paths(payload: dict[str, Any]) -> list[str]:
    """A sighting's crop files: the kept crops of its track (`crops`), else its one `crop`."""
    paths = [str(p) for p in payload.get("crops") or [] if p]
    if not paths and payload.get("crop"):
        paths = [str(payload["crop"])]
    return paths


def load_tracks(
    sightings_path: Path, since: float | None = None, min_crops: int = 2, max_tracks: int = 1500
) -> list[AdaptTrack]:
    """Person tracks of the sighting log (ended after `since`) whose crops are on disk, newest first
    (at most `max_tracks`: ~100 KB of small crops each). Read-only: the daemon keeps writing meanwhile."""
    if not Path(sightings_path).is_file():
        return []
    db = sqlite3.connect(f"file:{sightings_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute(
            "SELECT payload FROM sightings WHERE end_time >= ? ORDER BY end_time DESC LIMIT ?",
            (since or 0.0, max_tracks),
        ).fetchall()
    finally:
        db.close()
    tracks = []
    for (text,) in rows:
        payload = json.loads(text)
        if payload.get("label", "person") != "person":
            continue
        read = (cv2.imread(path, cv2.IMREAD_COLOR) for path in crop_paths(payload))
        images = [image for image in read if image is not None]
        if len(images) < min_crops:
            continue
        end = float(payload.get("end_time") or time.time())
        tracks.append(AdaptTrack(
            key=str(payload.get("sighting_id") or payload.get("event_id")),
            camera=str(payload.get("camera") or ""),
            start=float(payload.get("start_time") or end), end=end,
            crops=tuple(images), person=confirmed(payload),
        ))  # fmt: skip
    return tracks


def split_for_check(
    tracks: list[AdaptTrack], share: float = 0.25
) -> tuple[list[AdaptTrack], list[AdaptTrack]]:
    """(train, check): every 1/share-th track (by a hash of its id, so the split is the same every run)
    is held out for the guardrail, never trained on."""
    every = max(2, round(1.0 / share))
    check = [t for t in tracks if _bucket(t.key) % every == 0]
    train = [t for t in tracks if _bucket(t.key) % every != 0]
    return train, check


def _bucket(key: str) -> int:
    import zlib

    return zlib.crc32(key.encode())
