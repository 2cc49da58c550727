"""Identity test helpers (plain functions): a config with its own store, real crops and tracks from photos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camd.config.schema import Config
from camd.identity.evidence._crops import crop_box
from camd.identity.service import IdentityService
from camd.types import TrackSnapshot


def identity_config(state_dir: Path, models_dir: Path, **identity: Any) -> Config:
    return Config.model_validate({
        "state_dir": str(state_dir), "models_dir": str(models_dir), "identity": identity,
        "cameras": {"yard": {"url": "unused.mp4"}},
    })  # fmt: skip


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


def person_crops(service: IdentityService, image: np.ndarray) -> list[np.ndarray]:
    """Crops of the people the real detector finds in an image, largest first."""
    from camd.vision.detector import create_detector

    detector = create_detector(service.config.detector, service.config.models_path)
    people = sorted(
        (d for d in detector.detect(image) if d.label == "person" and d.score >= 0.5), key=lambda d: -d.area
    )
    return [np.ascontiguousarray(crop_box(image, d.box)) for d in people]


def track_from_image(
    service: IdentityService, image: np.ndarray, face: bool = True, body: bool = True
) -> Any:
    """A person track's evidence built from one real photo: the largest person's crop (body) and the
    largest face, embedded by the real models (what the pipeline gathers from a video's best frame)."""
    from camd.identity.track import KeptCrop, TrackEvidence

    evidence = TrackEvidence(kind="person", best_k=5, camera="yard", frames=10)
    if body:
        crops = person_crops(service, image) or [image]
        appearance, colour = service.embed_crop("person", crops[0])
        evidence.crops.append(KeptCrop(1.0, crops[0].copy(), (0, 0, 1, 1), 0.0, appearance, colour))
    if face:
        found = service.extractors.face.faces(image) if service.extractors.face is not None else []
        assert found, "the photo shows no face"
        evidence.faces.append(found[0].embedding)
    return evidence


def after_for(event_id: str, label: str = "person", at: float = 1_000_000.0) -> TrackSnapshot:
    """The last snapshot of a finished track, as TrackEvents builds it."""
    return TrackSnapshot(
        event_id=event_id, camera="yard", label=label, track_id=1, start_time=at - 3.0, end_time=at,
        frame_time=at, box=(10.0, 10.0, 60.0, 160.0), score=0.9, top_score=0.9, frames=10,
        frame_size=(640, 360),
    )
