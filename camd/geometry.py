"""Box geometry: boxes are pixel (x1, y1, x2, y2) tuples in the frame they came from.

A leaf module (it imports nothing of camd): camd.types and every stage use it.
"""

from __future__ import annotations

Box = tuple[float, float, float, float]


def box_area(box: Box) -> float:
    """The box's area in square pixels (0 for an empty or inverted box)."""
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap or both are empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def covered_share(box: Box, other: Box) -> float:
    """The share of `box`'s area inside `other` (0 for an empty box)."""
    w = min(box[2], other[2]) - max(box[0], other[0])
    h = min(box[3], other[3]) - max(box[1], other[1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return max(0.0, w) * max(0.0, h) / area if area > 0 else 0.0


def grown_box(box: Box, margin: float) -> Box:
    """`box` grown by `margin` of its width and height on each side."""
    grow_x, grow_y = (box[2] - box[0]) * margin, (box[3] - box[1]) * margin
    return (box[0] - grow_x, box[1] - grow_y, box[2] + grow_x, box[3] + grow_y)


def scale_box(box: Box, sx: float, sy: float) -> Box:
    """The box in a frame `sx` times as wide and `sy` times as high (a substream box on the main frame)."""
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def clip_box(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> Box:
    """The box kept inside a width x height frame."""
    return (
        min(max(x1, 0.0), float(width)),
        min(max(y1, 0.0), float(height)),
        min(max(x2, 0.0), float(width)),
        min(max(y2, 0.0), float(height)),
    )
