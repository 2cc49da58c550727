"""Sightings' crops: one small JPEG per sighting, owner-only, under <crops_dir>/<day>/<sighting>.jpg."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from camd.outage import OutageLog
from camd.private import private_dir, write_private

log = logging.getLogger(__name__)

CROP_HEIGHT = 128  # px: the stored JPEG is small on purpose
JPEG_QUALITY = 80


@dataclass(frozen=True, slots=True)
class SavedCrop:
    """A sighting's crop as written: the file, and its JPEG bytes for whoever shows it next."""

    path: Path
    jpeg: bytes


class CropStore:
    """Where the sightings' crops go; a full disk is logged once per outage, not once per crop."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.outage = OutageLog(
            log, f"saving crops in {self.folder}", "sightings are stored without their crop"
        )

    def save(self, sighting_id: str, image: np.ndarray, now: float) -> SavedCrop | None:
        """The sighting's small JPEG, or None when it cannot be written (a full disk: logged once per
        outage, see OutageLog; the sighting is stored without it and the next crop tries again)."""
        day = self.folder / time.strftime("%Y-%m-%d", time.localtime(now))
        scale = min(1.0, CROP_HEIGHT / max(1, image.shape[0]))
        small = (
            cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
        )
        ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return None
        data = encoded.tobytes()
        path = day / f"{safe_name(sighting_id)}.jpg"
        try:
            private_dir(day)
            private_dir(self.folder)
            write_private(path, data)
        except OSError as exc:
            with contextlib.suppress(OSError):  # no half-written JPEG left behind
                path.unlink()
            self.outage.failed(exc)
            return None
        self.outage.ok()
        return SavedCrop(path, data)


def safe_name(text: str) -> str:
    """`text` as a file name: letters, digits and -_. kept, anything else `_`."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
