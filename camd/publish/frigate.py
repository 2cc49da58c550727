"""The wire format of `<prefix>/events`: camd's TrackEvent as Frigate's `frigate/events` JSON.

The one place that builds (and, for `camd events`, reads back) that JSON. The payload has the shape
of Frigate's ({type, before, after}) so Frigate blueprints carry over, plus camd's identity fields
(null until identity decides) and a `message_id` so a consumer can tell a redelivered message from
a new one.
"""

from __future__ import annotations

from typing import Any

from camd.types import EventKind, Evidence, Identity, TrackEvent, TrackSnapshot, pixel_box


def event_payload(event: TrackEvent) -> dict[str, Any]:
    """The JSON-able payload of one event, as published."""
    return {
        "type": event.kind.value,
        "message_id": event.message_id,
        "before": snapshot_payload(event.before),
        "after": snapshot_payload(event.after),
    }


def snapshot_payload(track: TrackSnapshot) -> dict[str, Any]:
    """A track's `before` / `after` object: Frigate's fields, then camd's."""
    width, height = track.frame_size
    identity = track.identity
    return {
        "id": track.event_id,
        "camera": track.camera,
        "label": track.label,
        "sub_label": None,
        "score": round(track.score, 4),
        "top_score": round(track.top_score, 4),
        "box": pixel_box(track.box),
        "area": round(track.area),
        "frame_shape": [height, width],
        "start_time": track.start_time,
        "end_time": track.end_time,
        "frame_time": track.frame_time,
        "active": track.active,
        "false_positive": False,
        "current_zones": [],
        "entered_zones": [],
        "has_snapshot": False,
        "has_clip": False,
        "track_id": track.track_id,
        "frames": track.frames,
        "identity": identity.name,
        "identity_class": identity.identity_class,
        "confidence": identity.confidence,
        "evidence": identity.evidence.as_dict(),
        "global_id": identity.global_id,
    }  # fmt: skip


def event_from_payload(payload: dict[str, Any]) -> TrackEvent:
    """A published event read back (`camd events`, the bench's subscriber). Raises KeyError,
    TypeError or ValueError on a payload that is not one of camd's events."""
    return TrackEvent(
        kind=EventKind(payload["type"]),
        message_id=str(payload.get("message_id", "")),
        before=snapshot_from_payload(payload.get("before") or payload["after"]),
        after=snapshot_from_payload(payload["after"]),
    )


def snapshot_from_payload(after: dict[str, Any]) -> TrackSnapshot:
    height, width = after.get("frame_shape") or (0, 0)
    evidence = after.get("evidence") or {}
    x1, y1, x2, y2 = (float(v) for v in after["box"])
    end_time = after.get("end_time")
    return TrackSnapshot(
        event_id=str(after["id"]),
        camera=str(after["camera"]),
        track_id=int(after.get("track_id", -1)),
        label=str(after["label"]),
        score=float(after.get("score", after["top_score"])),
        top_score=float(after["top_score"]),
        box=(x1, y1, x2, y2),
        frame_size=(int(width), int(height)),
        start_time=float(after["start_time"]),
        frame_time=float(after["frame_time"]),
        frames=int(after.get("frames", 0)),
        end_time=None if end_time is None else float(end_time),
        identity=Identity(
            name=after.get("identity"),
            identity_class=after.get("identity_class"),
            confidence=after.get("confidence"),
            evidence=Evidence(evidence.get("face"), evidence.get("body"), evidence.get("gait")),
            global_id=after.get("global_id"),
        ),
    )
