"""The crops each enrolled person's body prototypes were embedded from, kept so that another body model
(a new default, the user's OSNet weights, a network adapted to this house) can embed them again: switching
body models loses nobody and asks nobody to enroll again (docs/identity.md, "Switching body models").

Owner-only JPEGs under <state_dir>/enrollment-crops/, named at random (a name in a file name would
outlive `camd rename`); a prototype lists its files in its payload (`crops`). They are biometric data
like the vectors: exported with the person and erased by `camd forget`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from camd.private import private_dir, write_private

MAX_HEIGHT = 256  # px: the re-ID input height; larger crops are scaled down, smaller kept as they are
JPEG_QUALITY = 90


class EnrollmentCrops:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def save(self, images: Sequence[np.ndarray]) -> list[str]:
        """Write the crops; returns their names (what a prototype's payload lists)."""
        names = []
        private_dir(self.folder)
        for image in images:
            scale = min(1.0, MAX_HEIGHT / max(1, image.shape[0]))
            small = image if scale >= 1 else cv2.resize(image, None, fx=scale, fy=scale,
                                                         interpolation=cv2.INTER_AREA)  # fmt: skip
            ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                continue
            name = f"{uuid.uuid4().hex}.jpg"
            write_private(self.folder / name, encoded.tobytes(), exclusive=True)
            names.append(name)
        return names

    def path(self, name: str) -> Path:
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"not a crop name: {name!r}")
        return self.folder / name

    def load(self, names: Iterable[str]) -> list[np.ndarray]:
        """The crops that are still there (BGR), in order; missing or unreadable files are skipped."""
        images = []
        for name in names:
            image = cv2.imread(str(self.path(name)), cv2.IMREAD_COLOR)
            if image is not None:
                images.append(image)
        return images

    def remove(self, names: Iterable[str]) -> int:
        removed = 0
        for name in names:
            with contextlib.suppress(FileNotFoundError, ValueError):
                self.path(name).unlink()
                removed += 1
        return removed

    def sweep(self, referenced: set[str]) -> int:
        """Delete crops no prototype lists (an enrollment killed before it committed)."""
        if not self.folder.is_dir():
            return 0
        return self.remove(p.name for p in self.folder.glob("*.jpg") if p.name not in referenced)
