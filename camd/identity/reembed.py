"""Body prototypes embedded again from their kept crops (enrollment_crops.py): after the body model
changed (a new default, the user's weights, `camd adapt`), everyone enrolled is recognised by the new
model's vectors without enrolling again.

When the memory opens with a new body space, it copies each body prototype that kept its crops without
its body vector and marks it `reembed` (migrations.py); the identity service, once the new model is
loaded, calls `reembed_pending`. `reembed_all` (`camd people reembed`) embeds every kept crop again,
in place: what `camd adapt` runs after replacing the network within one body space.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from camd.identity.layout import STRANGER_PREFIXES

if TYPE_CHECKING:
    from camd.identity.service import IdentityService

log = logging.getLogger(__name__)


@dataclass
class ReembedReport:
    prototypes: int = 0  # embedded again
    people: set[str] = field(default_factory=set)
    missing_crops: set[str] = field(default_factory=set)  # people whose crops were gone
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"prototypes": self.prototypes, "people": sorted(self.people),
                "missing_crops": sorted(self.missing_crops), "seconds": round(self.seconds, 2)}  # fmt: skip


def reembed_pending(service: IdentityService) -> ReembedReport:
    """Body prototypes that came into this body space without their body vector get it back."""
    return _reembed(service, lambda hit: bool(hit.payload.get("reembed")))


def reembed_all(service: IdentityService) -> ReembedReport:
    """Every body prototype with kept crops embedded again by the body model in use."""
    return _reembed(service, lambda hit: bool(hit.payload.get("crops")))


def _reembed(service: IdentityService, wanted: object) -> ReembedReport:
    started = time.monotonic()
    report = ReembedReport()
    memory = service.memory
    candidates = [h for h in memory.prototypes(now=time.time())
                  if not str(h.person_id).startswith(STRANGER_PREFIXES) and wanted(h)]  # type: ignore[operator]
    for hit in candidates:
        images = memory.enrollment_crops.load(hit.payload.get("crops") or [])
        if not images:
            report.missing_crops.add(str(hit.person_id))
            continue
        body, colour = _embed(service, images)
        if body is None:
            continue
        memory.set_body(hit, body, colour)
        report.prototypes += 1
        report.people.add(str(hit.person_id))
    report.seconds = time.monotonic() - started
    if candidates:
        log.info(
            "identity: embedded %d body prototypes of %s again with %s (%.1f s)%s",
            report.prototypes, ", ".join(sorted(report.people)) or "nobody",
            service.body_model.label, report.seconds,
            f"; crops missing for {', '.join(sorted(report.missing_crops))}: re-enroll them"
            if report.missing_crops else "",
        )  # fmt: skip
    return report


def _embed(service: IdentityService, images: list[np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The mean body vector (and clothing colour) of crops, as a track's mean is taken."""
    extractors = service.extractors
    if extractors.body is None:
        return None, None
    with extractors.lock:
        bodies = extractors.body.embed(images)
        colours = extractors.colour.embed(images) if extractors.colour is not None else None
    body = bodies.mean(axis=0)
    body /= max(float(np.linalg.norm(body)), 1e-12)
    colour = None
    if colours is not None:
        colour = colours.mean(axis=0)
        colour /= max(float(np.linalg.norm(colour)), 1e-12)
    return body.astype(np.float32), None if colour is None else colour.astype(np.float32)


