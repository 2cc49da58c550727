"""Shot cuts: the whole picture changes at once between two detected frames.

An edited clip cuts between shots, a PTZ camera jumps to a preset, a stream is re-pointed at another
camera. A box in the new shot may overlap a box of the old one, and the tracker would then carry a
person's track (and later his name) onto whoever stands there now. A cut ends every open track.

The score is PySceneDetect's content score (mean HSV difference between the frames, 0-255), taken
on a small copy of each detected frame. Measured on camd's footage (docs/performance.md): fixed home
and street cameras score at most about 15 between detected frames, a handheld close-up panning fast 42,
the stage clip's real cuts 47.5-56. CUT_SCORE sits between the two. A cut found wrongly costs a new
track id, never a wrong name.
"""

from __future__ import annotations

import cv2
import numpy as np
from scenedetect import FrameTimecode
from scenedetect.detectors import ContentDetector

from camd.config import TrackerConfig

CUT_SCORE = 45.0
THUMB_WIDTH = 256  # the score is a mean over pixels: a small copy gives it, at a fraction of the cost


class SceneCuts:
    """One camera's cut detector, fed the frames the detector looks at, in order."""

    def __init__(self, threshold: float = CUT_SCORE) -> None:
        self._threshold = threshold
        self._size: tuple[int, int] | None = None
        self._restart()

    @classmethod
    def for_tracker(cls, config: TrackerConfig) -> SceneCuts | None:
        """The camera's cut detector as `tracker.scene_cut` sets it; None when it is 0 (off)."""
        return cls(config.scene_cut) if config.scene_cut > 0 else None

    def cut(self, image: np.ndarray) -> bool:
        """True when `image` starts a new shot (never for the first frame)."""
        height, width = image.shape[:2]
        scale = THUMB_WIDTH / width if width > THUMB_WIDTH else 1.0
        small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)  # fmt: skip
        changed_size = self._size is not None and small.shape[:2] != self._size
        if changed_size:  # the stream changed resolution: a new picture, and the score needs equal sizes
            self._restart()
        self._size = small.shape[:2]
        cuts = self._detector.process_frame(FrameTimecode(self._frames, 10.0), small)
        self._frames += 1
        return changed_size or bool(cuts)

    def _restart(self) -> None:
        # min_scene_len 1: a cut is reported on the frame it happens, not held back as a flash
        self._detector = ContentDetector(threshold=self._threshold, min_scene_len=1)
        self._frames = 0
