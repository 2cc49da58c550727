"""The small value types that flow through the pipeline, each stage taking one and handing on the next.

camera source -> Frame -> detector -> list[Detection] -> tracker -> list[TrackedObject]
-> events stage -> TrackSnapshot (one track at one moment) -> TrackEvent (new / update / end)
-> publish (the Frigate-shaped JSON, built in camd/publish/frigate.py only).
Identity looks at frames and tracked objects and answers with IdentityDecision values (who a track
is, as `Identity`); the pipeline hands them to the events stage, which puts them in the next event.

Boxes are always pixel coordinates (x1, y1, x2, y2) in the frame they came from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from camd.geometry import Box, box_area

PERSON = "person"
VEHICLE_LABELS: frozenset[str] = frozenset({"car", "truck", "bus", "motorcycle", "bicycle"})
TRACKED_LABELS: frozenset[str] = frozenset({PERSON}) | VEHICLE_LABELS
VEHICLE = "vehicle"


def kind_of(label: str) -> str:
    """What a detector label is to camd: "person", or "vehicle" for every other tracked label."""
    return PERSON if label == PERSON else VEHICLE


def labels_of(kind: str) -> frozenset[str]:
    """The detector labels of a kind ("person" or "vehicle")."""
    return frozenset({PERSON}) if kind == PERSON else VEHICLE_LABELS


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
        return box_area(self.box)


@dataclass(slots=True)
class TrackedObject:
    """A detection the tracker tied to a stable per-camera track id."""

    track_id: int
    detection: Detection


class EventKind(StrEnum):
    """A track event's kind, as Frigate names it (`type` on the wire)."""

    NEW = "new"
    UPDATE = "update"
    END = "end"


@dataclass(frozen=True, slots=True)
class Evidence(Mapping[str, float | None]):
    """Per-modality probabilities behind an identity decision (None: that modality had nothing);
    read-only, also as a mapping {"face", "body", "gait"} -> probability."""

    face: float | None = None
    body: float | None = None
    gait: float | None = None
    # Only for a track that was not given a name because it does not look like a person: the share of
    # its poses that show a body, and why (camd/identity/views.py). On the wire only when set.
    person: float | None = None
    reason: str | None = None

    def __getitem__(self, modality: str) -> float | None:
        if modality not in MODALITIES:
            raise KeyError(modality)
        return getattr(self, modality)  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        return iter(MODALITIES)

    def __len__(self) -> int:
        return len(MODALITIES)

    def as_dict(self) -> dict[str, float | str | None]:
        out: dict[str, float | str | None] = {"face": self.face, "body": self.body, "gait": self.gait}
        if self.reason is not None:
            out.update(person=self.person, reason=self.reason)
        return out


MODALITIES = ("face", "body", "gait")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a track is, as its events say. All fields None until the identity stage decides."""

    name: str | None = None
    identity_class: str | None = None  # family/visitor/stranger, known_vehicle/unknown_vehicle
    confidence: float | None = None
    evidence: Evidence = Evidence()
    global_id: str | None = None


UNDECIDED = Identity()


@dataclass(frozen=True, slots=True)
class IdentityDecision:
    """Identity's answer for one track: early (while it is open, when a confident name is new) or
    final (when it ended: then with the JPEG crop the sighting was stored with, when one was)."""

    track_id: int
    identity: Identity
    crop_jpeg: bytes | None = None


@dataclass(frozen=True, slots=True)
class TrackSnapshot:
    """One track as the events stage knows it at one moment: a Frigate event's `before` / `after`."""

    event_id: str  # the track's event id: Frigate's `id`, and the id of the sighting it becomes
    camera: str
    track_id: int
    label: str  # the most frequent label so far (a vote: SSD flips car / truck on one vehicle)
    score: float  # the last detection's
    top_score: float
    box: Box
    frame_size: tuple[int, int]  # (width, height) of the frames the box is in
    start_time: float
    frame_time: float  # when it was last seen
    frames: int
    end_time: float | None = None  # set once the track ended
    identity: Identity = UNDECIDED

    @property
    def active(self) -> bool:
        return self.end_time is None

    @property
    def area(self) -> float:
        return box_area(self.box)


@dataclass(frozen=True, slots=True)
class TrackEvent:
    """One event of a track's life: what camd publishes (camd/publish/frigate.py gives its JSON)."""

    kind: EventKind
    message_id: str  # unique per message: a consumer tells a redelivery from a new event
    before: TrackSnapshot  # the track as the previous event of it said (the same as `after` at `new`)
    after: TrackSnapshot
    crop_jpeg: bytes | None = None  # `end` only: the crop identity stored with the sighting


def pixel_box(box: Box) -> list[int]:
    """A box in whole pixels, as events and sightings record it."""
    return [round(v) for v in box]
