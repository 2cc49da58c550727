"""The small value types that flow through the pipeline.

camera source -> Frame -> detector -> list[Detection] -> tracker -> list[TrackedObject]
-> event builder -> Event (Frigate-shaped dict on MQTT).

Boxes are always pixel coordinates (x1, y1, x2, y2) in the frame they came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Box = tuple[float, float, float, float]

PERSON = "person"
VEHICLE_LABELS: frozenset[str] = frozenset({"car", "truck", "bus", "motorcycle", "bicycle"})
TRACKED_LABELS: frozenset[str] = frozenset({PERSON}) | VEHICLE_LABELS


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded, sampled frame of a camera."""

    camera: str
    index: int  # position among the frames this source yielded (0, 1, 2, ...)
    timestamp: float  # wall-clock seconds since the epoch when the frame was captured
    image: np.ndarray  # BGR, HxWx3, uint8 (OpenCV's convention)
    pts_seconds: float | None = None  # stream presentation time, when the container gives one

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class Detection:
    """One object a detector found in one frame."""

    label: str  # one of TRACKED_LABELS
    score: float  # 0..1
    box: Box

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass(slots=True)
class TrackedObject:
    """A detection the tracker tied to a stable per-camera track id."""

    track_id: int
    detection: Detection


EventType = Literal["new", "update", "end"]


@dataclass(slots=True)
class Identity:
    """Who a track is. All fields None until the identity stage decides."""

    name: str | None = None
    identity_class: str | None = None  # family/visitor/stranger, known_vehicle/unknown_vehicle
    confidence: float | None = None
    evidence: dict[str, float | None] = field(
        default_factory=lambda: {"face": None, "body": None, "gait": None}
    )
    global_id: str | None = None
