"""The far-people pass: a second look, at native resolution, at motion the first pass left unexplained.

The SSD sees every frame squeezed to 300x300: in a 1280x720 frame a person 60 px tall is 25 px there,
too small for it. The motion gate already knows where something moves; when a moving region overlaps
no detection, a square tile of the frame around it (`far.tile` frame pixels, about the model's own
input size, so nothing is shrunk) is run through the same detector, and what it finds inside the
moving region is added. Frames below `far.min_height` are skipped: the first pass already sees them
near native size. The cost is one extra inference per tile, only on frames with unexplained motion,
at most `far.max_tiles` per frame.

The moving regions are the pass's own (`far.motion_width`: the gate measures motion a second time,
finer than its own copy, for these tiles only). An open track whose predicted box is small
(`far.track_height`) and which the first pass did not find again is one more region to tile: a far
person found once is looked for where he should be, moving region or not (the gate hands the pass
those boxes, camd/vision/gate.py). A region of the pass's own motion no open track explains also wakes
the detector, at most every `far.wake_every_s` (camd/vision/motion.py): a lone far walker is too small
for the gate's own motion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from camd.config.schema import FarConfig
from camd.geometry import covered_share, iou
from camd.types import Box, Detection
from camd.vision.protocol import Detector

EXPLAINED_COVER = 0.3  # a region this much inside a detection box is that detection's motion
MIN_REGION_PX = 12  # smaller moving blobs are noise (leaves, compression), not a person
DUPLICATE_IOU = 0.5
MIN_TILE = 128
TILE_PER_REGION = 2.5
MIN_FOUND_PX = 25  # the pass's finds shorter than this are mostly clutter (and too small to identify)
HINT_REFOUND_IOU = 0.3  # a track's predicted box the first pass found again (this close) needs no tile


@dataclass(frozen=True, slots=True)
class FarLook:
    """What the motion gate hands the far pass with a frame besides its own moving regions: the far
    pass's own finer ones (`far.motion_width`; None: use the gate's) and the open tracks' boxes predicted
    for the frame (for the track tiles)."""

    regions: tuple[Box, ...] | None = None
    hints: tuple[Box, ...] = ()


def unexplained_regions(regions: Sequence[Box], detections: Sequence[Detection], tile: int) -> list[Box]:
    """Moving regions not covered by any detection, largest first. A region larger than a tile (walkers
    close together merge into one blob) is cut into tile-sized parts, each judged on its own."""
    out = []
    for region in _split(regions, tile):
        width, height = region[2] - region[0], region[3] - region[1]
        if max(width, height) < MIN_REGION_PX:
            continue  # noise (leaves, compression), not a person
        if any(covered_share(region, d.box) >= EXPLAINED_COVER for d in detections):
            continue
        out.append(region)
    return sorted(out, key=lambda r: -(r[2] - r[0]) * (r[3] - r[1]))


def track_regions(
    hints: Sequence[Box], detections: Sequence[Detection], width: int, height: int, max_height: float
) -> list[Box]:
    """Open tracks' predicted boxes worth a tile: small (at most `max_height` of the frame's height) and
    not found again by the first pass."""
    out = []
    for hx1, hy1, hx2, hy2 in hints:
        box = (max(0.0, hx1), max(0.0, hy1), min(float(width), hx2), min(float(height), hy2))
        if not (MIN_REGION_PX <= box[3] - box[1] <= max_height * height) or box[2] - box[0] < 4:
            continue
        if any(iou(d.box, box) >= HINT_REFOUND_IOU for d in detections):
            continue
        out.append(box)
    return out


def _split(regions: Sequence[Box], tile: int) -> list[Box]:
    parts: list[Box] = []
    for x1, y1, x2, y2 in regions:
        cols, rows = max(1, math.ceil((x2 - x1) / tile)), max(1, math.ceil((y2 - y1) / tile))
        step_x, step_y = (x2 - x1) / cols, (y2 - y1) / rows
        for i in range(cols):
            for j in range(rows):
                parts.append((x1 + i * step_x, y1 + j * step_y, x1 + (i + 1) * step_x, y1 + (j + 1) * step_y))
    return parts


def _tile_around(region: Box, side: float, width: int, height: int) -> Box:
    size_x, size_y = min(side, width), min(side, height)
    cx, cy = (region[0] + region[2]) / 2, (region[1] + region[3]) / 2
    x1 = int(min(max(0, cx - size_x / 2), width - size_x))
    y1 = int(min(max(0, cy - size_y / 2), height - size_y))
    return (float(x1), float(y1), float(x1 + size_x), float(y1 + size_y))


def tiles_for(regions: Sequence[Box], width: int, height: int, tile: int, max_tiles: int) -> list[Box]:
    """Square tiles (clipped to the frame), one candidate centred on each region, TILE_PER_REGION times
    its longer side (at least MIN_TILE, at most `tile`): the detector enlarges the tile to its 300x300
    input, so a 50 px walker reaches the size the SSD finds people at. Picked greedily: first the
    candidate holding the most regions not yet in a tile (the larger region on a tie), until every
    region is in a tile or `max_tiles` are picked (in a crowd a tile over a cluster of far walkers
    finds more than one over the largest blob). A region is in a tile when 99% of it is inside."""
    candidates = [
        _tile_around(
            r, max(MIN_TILE, min(tile, TILE_PER_REGION * max(r[2] - r[0], r[3] - r[1]))), width, height
        )
        for r in regions
    ]
    holds = [
        {i for i, r in enumerate(regions) if covered_share(r, t) >= 0.99} | {k}
        for k, t in enumerate(candidates)
    ]
    left = set(range(len(regions)))
    tiles: list[Box] = []
    while left and len(tiles) < max_tiles:
        best = max(sorted(left), key=lambda k: (len(holds[k] & left), -k))  # regions come largest first
        tiles.append(candidates[best])
        left -= holds[best]
    return tiles


def far_pass(
    detector: Detector,
    image: np.ndarray,
    detections: list[Detection],
    regions: Sequence[Box],
    config: FarConfig,
    hints: Sequence[Box] = (),
) -> list[Detection]:
    """`detections` plus what the tiles over unexplained motion and over small tracks the first pass lost
    found (inside that motion or track box, not already detected). `regions`: the frame's moving regions
    (the far pass's own, `far.motion_width`, when measured); `hints`: the open tracks' boxes predicted
    for this frame (used up to `far.track_height`). Returns `detections` itself when there is nothing
    to look at."""
    height, width = image.shape[:2]
    if not config.enabled or height < config.min_height:
        return detections
    todo = unexplained_regions(regions, detections, config.tile) if regions else []
    if config.track_height > 0 and hints:
        todo = track_regions(hints, detections, width, height, config.track_height) + todo
    if not todo:
        return detections
    found = list(detections)
    for tx1, ty1, tx2, ty2 in tiles_for(todo, width, height, config.tile, config.max_tiles):
        crop = np.ascontiguousarray(image[int(ty1) : int(ty2), int(tx1) : int(tx2)])
        for det in detector.detect(crop):
            box: Box = (det.box[0] + tx1, det.box[1] + ty1, det.box[2] + tx1, det.box[3] + ty1)
            if box[3] - box[1] < MIN_FOUND_PX:
                continue
            if not any(covered_share(region, box) > 0 or covered_share(box, region) > 0 for region in todo):
                continue  # static clutter in the tile: the first pass's business
            if any(d.label == det.label and iou(d.box, box) >= DUPLICATE_IOU for d in found):
                continue
            found.append(Detection(label=det.label, score=det.score, box=box))
    return found
