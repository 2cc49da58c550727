"""The motion gate: run the detector only when something moves.

A small grey copy of each frame is compared with a slowly learned background (running average).
The detector is skipped on frames whose motion is already explained by open tracks or absent,
with periodic refreshes so stationary people are not lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from camd.config.schema import FarConfig, MotionConfig
from camd.geometry import covered_share, grown_box
from camd.types import Box
from camd.vision.far import MIN_REGION_PX


@dataclass(frozen=True, slots=True)
class MotionResult:
    moving: bool
    fraction: float  # of the small frame's pixels that changed
    boxes: list[tuple[int, int, int, int]]  # moving regions, in full-frame pixels
    mask: np.ndarray | None = None  # the small frame's changed pixels (1), before any dilation
    scale: float = 1.0  # full-frame pixels per small-frame pixel


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
            return MotionResult(False, fraction, [], mask, self._scale)
        grown = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=2)
        contours, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            s = self._scale
            boxes.append((int(x * s), int(y * s), int((x + w) * s), int((y + h) * s)))
        return MotionResult(True, fraction, boxes, mask, self._scale)


# How far beyond a track's box its motion still counts as the track's (limbs, shadows, the tracker's lag).
TRACK_MARGIN = 0.5


def box_mask(result: MotionResult, boxes: list[Box], margin: float = TRACK_MARGIN) -> np.ndarray:
    """The small frame's pixels inside any of `boxes` (1), each grown by `margin` of its size on each
    side (limbs, shadows and the tracker's lag)."""
    if result.mask is None:
        raise ValueError("box_mask needs a motion result with its mask")
    inside = np.zeros_like(result.mask)
    for box in boxes:
        x1, y1, x2, y2 = grown_box(box, margin)
        corner1 = (int(x1 / result.scale), int(y1 / result.scale))
        corner2 = (int(x2 / result.scale), int(y2 / result.scale))
        cv2.rectangle(inside, corner1, corner2, 1, thickness=-1)
    return inside


class MotionGate:
    """Decides, frame by frame, whether the detector runs.

    It runs when motion appears that nothing explains (someone new), at least every
    `moving_refresh_s` while a tracked object moves (0: every frame), every `track_refresh_s`
    while tracks are open or anything moves, and every `refresh_s` in any case (people standing
    still). On frames the far pass measures its own finer motion for (`far.motion_width`), a region of
    it no open track explains also wakes it, at most every `far.wake_every_s` (a far walker too small
    for the gate's own motion).

    Motion is explained by an open track's box (where the track is predicted to be now) or by a
    moving region the detector has just looked at (`examined`, fed back by the pipeline once the
    detections are known): what it found there is tracked now, and the rest matters on busy
    scenes: a far-away walker too small to detect, swaying leaves or a shadow would otherwise wake
    the detector on every frame although it just found nothing there. Until the next refresh the
    detector's last answer about them counts.

    Motion is judged pixel by pixel, not by the moving regions' rectangles: people walking close
    together make one region whose rectangle their boxes never cover, although every moving pixel
    in it is theirs. Motion outside them counts once it is as large as motion itself must be
    (`min_area`).
    """

    def __init__(self, config: MotionConfig, far: FarConfig | None = None) -> None:
        """far: the far-people pass the detector runs after the first pass (camd/vision/far.py), when on:
        with `far.motion_width` above `frame_width`, the gate measures motion a second time that finely,
        on frames at least `far.min_height` tall, for the far pass's tiles only (every region, whatever
        `min_area`); its regions no open track explains wake the detector at most every `far.wake_every_s`
        (0: what wakes the detector is the gate's own motion alone)."""
        self.config = config
        self.motion = MotionDetector(config)
        self.far = far if far is not None and far.enabled else None
        self._far_motion: MotionDetector | None = None
        if self.far is not None and self.far.motion_width > config.frame_width:
            self._far_motion = MotionDetector(
                config.model_copy(update={"frame_width": self.far.motion_width, "min_area": 0.0})
            )
        self._last_detect: float | None = None
        self.last_regions: list[Box] = []  # motion regions of the frame last sent to the detector
        self.last_far_regions: list[Box] | None = None  # the far pass's own (None: not measured)
        self._examined: list[Box] = []  # moving regions of the frame the detector last answered for
        self.frames = 0
        self.detected = 0
        self.reasons: Counter[str] = Counter()  # why the detector ran (bench and status figures)

    def should_detect(self, image: np.ndarray, timestamp: float, track_boxes: Sequence[Box]) -> bool:
        self.frames += 1
        if not self.config.enabled:
            self.reasons["gate off"] += 1
            return self._run(timestamp, [])
        result = self.motion.update(image)  # every frame: the background keeps learning
        regions: list[Box] = [tuple(float(v) for v in region) for region in result.boxes]  # type: ignore[misc]
        far_regions = self._far_regions(image)
        if self._last_detect is None:
            self.reasons["first frame"] += 1
            return self._run(timestamp, regions, far_regions)
        since = timestamp - self._last_detect + 1e-6  # frame times are sums of float steps
        unexplained = moving = False
        if result.moving and result.mask is not None:
            tracked = box_mask(result, list(track_boxes))  # rasterised once, used twice
            explained = tracked | box_mask(result, self._examined)
            unexplained = np.count_nonzero(result.mask > explained) >= self.config.min_area * result.mask.size
            moving = bool(np.count_nonzero(result.mask & tracked))
        if unexplained:
            reason = "new motion"
        elif since >= self.config.refresh_s:
            reason = "refresh"
        elif (track_boxes or result.boxes) and since >= self.config.track_refresh_s:
            reason = "tracks open"
        elif moving and since >= self.config.moving_refresh_s:
            reason = "tracked object moving"
        elif self._far_wakes(far_regions, track_boxes, since):
            reason = "far motion"
        else:
            return False
        self.reasons[reason] += 1
        return self._run(timestamp, regions, far_regions)

    def examined(self, regions: Sequence[Box]) -> None:
        """The detector has answered for a frame whose moving `regions` it saw. What it found is
        tracked now; the rest (too small, leaves, shadows) it looked at and found nothing in: all of
        that motion is explained until the next refresh."""
        self._examined = list(regions)

    def _far_regions(self, image: np.ndarray) -> list[Box] | None:
        """The far pass's own moving regions (every frame: its background keeps learning), on frames tall
        enough for the pass; None when not measured."""
        if self._far_motion is None or self.far is None or image.shape[0] < self.far.min_height:
            return None
        return [tuple(float(v) for v in r) for r in self._far_motion.update(image).boxes]  # type: ignore[misc]

    def _far_wakes(self, far_regions: list[Box] | None, track_boxes: Sequence[Box], since: float) -> bool:
        """The far pass's own motion has a region (at least MIN_REGION_PX) that no open track's box, grown
        as `box_mask` grows it, mostly holds, and the detector last ran at least `far.wake_every_s` ago."""
        if self.far is None or not far_regions or not self.far.wake_every_s or since < self.far.wake_every_s:
            return False
        grown = [grown_box(box, TRACK_MARGIN) for box in track_boxes]
        return any(
            max(r[2] - r[0], r[3] - r[1]) >= MIN_REGION_PX
            and not any(covered_share(r, g) >= 0.5 for g in grown)
            for r in far_regions
        )

    def _run(self, timestamp: float, regions: list[Box], far_regions: list[Box] | None = None) -> bool:
        # The last answer's regions still count until this frame's answer replaces them: when the
        # camera thread runs ahead of the detector, clearing them would wake it on every frame.
        self._last_detect = timestamp
        self.last_regions = regions
        self.last_far_regions = far_regions
        self.detected += 1
        return True

    @property
    def skipped(self) -> int:
        return self.frames - self.detected
