"""The motion gate: run the detector only when something moves.

A small grey copy of each frame is compared with a slowly learned background (running average).
The detector is skipped on frames whose motion is already explained by open tracks or absent,
with periodic refreshes so stationary people are not lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from camd.config.models import MotionConfig
from camd.types import Box


@dataclass(frozen=True, slots=True)
class MotionResult:
    moving: bool
    fraction: float  # of the small frame's pixels that changed
    boxes: list[tuple[int, int, int, int]]  # moving regions, in full-frame pixels


class MotionDetector:
    """Per camera; not thread-safe (one camera thread owns it)."""

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._background: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._scale = 1.0
        self._size: tuple[int, int] | None = None

    def _small_grey(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if self._size != (width, height):  # first frame, or the camera changed resolution
            self._size = (width, height)
            self._scale = width / self.config.frame_width
            self._background = self._previous = None
        small_height = max(1, round(height / self._scale))
        grey = cv2.cvtColor(
            cv2.resize(image, (self.config.frame_width, small_height), interpolation=cv2.INTER_AREA),
            cv2.COLOR_BGR2GRAY,
        )
        return cv2.GaussianBlur(grey, (5, 5), 0).astype(np.float32)

    def update(self, image: np.ndarray) -> MotionResult:
        grey = self._small_grey(image)
        if self._background is None or self._previous is None:
            self._background, self._previous = grey.copy(), grey
            return MotionResult(True, 1.0, [(0, 0, image.shape[1], image.shape[0])])
        # A pixel moves when it differs from the learned background AND from the previous frame:
        # the second test drops the "ghost" a walker leaves where the background still shows it.
        changed = cv2.absdiff(grey, self._background) > self.config.threshold
        changing = cv2.absdiff(grey, self._previous) > self.config.threshold / 2
        mask = (changed & changing).astype(np.uint8)
        cv2.accumulateWeighted(grey, self._background, self.config.learning_rate)
        self._previous = grey
        fraction = float(mask.mean())
        if fraction < self.config.min_area:
            return MotionResult(False, fraction, [])
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            s = self._scale
            boxes.append((int(x * s), int(y * s), int((x + w) * s), int((y + h) * s)))
        return MotionResult(True, fraction, boxes)


def covered(region: tuple[int, int, int, int], boxes: list[Box], margin: float = 0.5) -> bool:
    """True when most of a moving region lies inside tracked boxes (each grown by `margin`)."""
    x1, y1, x2, y2 = region
    area = max(1, (x2 - x1) * (y2 - y1))
    inside = 0.0
    for bx1, by1, bx2, by2 in boxes:
        grow_x, grow_y = (bx2 - bx1) * margin, (by2 - by1) * margin
        ix = min(x2, bx2 + grow_x) - max(x1, bx1 - grow_x)
        iy = min(y2, by2 + grow_y) - max(y1, by1 - grow_y)
        if ix > 0 and iy > 0:
            inside += ix * iy
    return inside / area >= 0.7


class MotionGate:
    """Decides, frame by frame, whether the detector runs.

    It runs when motion appears that nothing explains (someone new), at least every
    `moving_refresh_s` while a tracked object moves (0: every frame), every `track_refresh_s`
    while tracks are open or anything moves, and every `refresh_s` in any case (people standing
    still).

    Motion is explained by an open track's box (where the track is predicted to be now) or by a
    region the detector has just looked at and found nothing in (`examined`, fed back by the
    pipeline once the detections are known). The second matters on busy scenes: a far-away walker
    too small to detect, swaying leaves or a shadow would otherwise wake the detector on every
    frame although it just found nothing there. Until the next refresh the detector's last answer
    about them counts.
    """

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self.motion = MotionDetector(config)
        self._last_detect: float | None = None
        self.last_regions: list[Box] = []  # motion regions of the frame last sent to the detector
        self._examined: list[Box] = []  # regions the detector looked at and found nothing in
        self.frames = 0
        self.detected = 0

    def should_detect(self, image: np.ndarray, timestamp: float, track_boxes: list[Box]) -> bool:
        self.frames += 1
        if not self.config.enabled:
            return self._run(timestamp, [])
        result = self.motion.update(image)  # every frame: the background keeps learning
        regions: list[Box] = [tuple(float(v) for v in region) for region in result.boxes]  # type: ignore[misc]
        if self._last_detect is None:
            return self._run(timestamp, regions)
        since = timestamp - self._last_detect + 1e-6  # frame times are sums of float steps
        known = list(track_boxes) + self._examined
        unexplained = any(not covered(region, known) for region in result.boxes)
        moving = any(covered(region, list(track_boxes)) for region in result.boxes)
        if (
            unexplained
            or since >= self.config.refresh_s
            or ((track_boxes or result.boxes) and since >= self.config.track_refresh_s)
            or (moving and since >= self.config.moving_refresh_s)
        ):
            return self._run(timestamp, regions)
        return False

    def examined(self, regions: list[Box], detections: list[Box]) -> None:
        """The detector's answer for a frame whose motion `regions` it saw: the regions where it
        found nothing explain their motion until the next refresh."""
        self._examined = [r for r in regions if not any(_overlaps(r, box) for box in detections)]

    def _run(self, timestamp: float, regions: list[Box]) -> bool:
        self._last_detect = timestamp
        self.last_regions = regions
        self._examined = []  # until the detector's answer comes back, nothing counts as examined
        self.detected += 1
        return True

    @property
    def skipped(self) -> int:
        return self.frames - self.detected


def _overlaps(a: Box, b: Box) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])
