"""Body shape and gait of one track, from its per-frame MoveNet keypoints.

Two parts, each used only when the keypoints support it:
- body proportions: limb and torso lengths over a skeleton height, the median over frames where those
  keypoints are confident (MoveNet invents limbs on truncated bodies; their low scores filter them out);
- cadence (steps per second, from the oscillation of the distance between the ankles) and stride (body
  heights travelled per step), when the track is long enough and the person walks.

Both are weak evidence at a home camera's ~10 fps and 50-150 px tall people: docs/identity.md has the
numbers. They support a body-appearance match; they never decide alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from camd.identity.evidence.pose import CONFIDENT, INDEX
from camd.types import Box

# Length ratios, each over the skeleton height (head-to-ankle along the body, see _skeleton_height).
PROPORTIONS: tuple[str, ...] = (
    "head_neck", "torso", "thigh", "shin", "upper_arm", "forearm", "shoulder_width", "hip_width",
)  # fmt: skip
# Cadence needs a few full steps: below this many seconds of valid ankles the FFT peak is noise.
MIN_CADENCE_SECONDS = 2.0
# Walking step frequencies (Hz) people actually use; peaks outside are sway or detector jitter.
STEP_BAND_HZ = (0.8, 3.2)
# The FFT peak must hold this share of the band's power to count as a rhythm (standing people have none).
MIN_PEAK_SHARE = 0.25


@dataclass(frozen=True, slots=True)
class PoseSample:
    """One frame of a track: when, the person box, and the 17 keypoints (x, y, score) in frame pixels."""

    timestamp: float
    box: Box
    keypoints: np.ndarray


@dataclass(frozen=True)
class GaitSignature:
    """What a track's keypoints say about body shape and walk; None/absent where they say nothing."""

    proportions: dict[str, float] = field(default_factory=dict)  # name -> median ratio
    proportion_frames: int = 0  # frames with a measurable skeleton height
    cadence_hz: float | None = None  # steps per second
    stride_heights: float | None = None  # distance per step, in skeleton heights
    frames: int = 0

    def vector(self) -> np.ndarray:
        """PROPORTIONS then cadence and stride, NaN where unknown: a fixed layout for storage."""
        values = [self.proportions.get(name, math.nan) for name in PROPORTIONS]
        values += [
            math.nan if self.cadence_hz is None else self.cadence_hz,
            math.nan if self.stride_heights is None else self.stride_heights,
        ]
        return np.array(values, dtype=np.float32)


def _point(keypoints: np.ndarray, name: str) -> np.ndarray | None:
    row = keypoints[INDEX[name]]
    return row[:2] if row[2] >= CONFIDENT else None


def _mid(keypoints: np.ndarray, left: str, right: str) -> np.ndarray | None:
    a, b = _point(keypoints, left), _point(keypoints, right)
    return None if a is None or b is None else (a + b) / 2


def _length(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    return None if a is None or b is None else float(np.linalg.norm(a - b))


def _side_mean(keypoints: np.ndarray, upper: str, lower: str) -> float | None:
    """Mean length of a limb over the sides where both its ends are confident."""
    lengths = [
        _length(_point(keypoints, f"{side}_{upper}"), _point(keypoints, f"{side}_{lower}"))
        for side in ("left", "right")
    ]
    present = [v for v in lengths if v is not None]
    return float(np.mean(present)) if present else None


def _skeleton_height(keypoints: np.ndarray) -> float | None:
    """Nose to shoulders + shoulders to hips + thigh + shin: a height that bending knees barely shorten."""
    shoulders, hips = (
        _mid(keypoints, "left_shoulder", "right_shoulder"),
        _mid(keypoints, "left_hip", "right_hip"),
    )
    parts = [
        _length(_point(keypoints, "nose"), shoulders),
        _length(shoulders, hips),
        _side_mean(keypoints, "hip", "knee"),
        _side_mean(keypoints, "knee", "ankle"),
    ]
    if any(p is None for p in parts):
        return None
    return float(sum(parts))  # type: ignore[arg-type]


def frame_proportions(keypoints: np.ndarray) -> dict[str, float]:
    """The PROPORTIONS measurable in one frame (confident keypoints only)."""
    height = _skeleton_height(keypoints)
    if height is None or height < 1.0:
        return {}
    shoulders, hips = (
        _mid(keypoints, "left_shoulder", "right_shoulder"),
        _mid(keypoints, "left_hip", "right_hip"),
    )
    lengths = {
        "head_neck": _length(_point(keypoints, "nose"), shoulders),
        "torso": _length(shoulders, hips),
        "thigh": _side_mean(keypoints, "hip", "knee"),
        "shin": _side_mean(keypoints, "knee", "ankle"),
        "upper_arm": _side_mean(keypoints, "shoulder", "elbow"),
        "forearm": _side_mean(keypoints, "elbow", "wrist"),
        "shoulder_width": _length(_point(keypoints, "left_shoulder"), _point(keypoints, "right_shoulder")),
        "hip_width": _length(_point(keypoints, "left_hip"), _point(keypoints, "right_hip")),
    }
    return {name: value / height for name, value in lengths.items() if value is not None}


def _uniform(times: np.ndarray, values: np.ndarray, step: float) -> np.ndarray:
    grid = np.arange(times[0], times[-1] + 1e-9, step)
    return np.interp(grid, times, values)


def step_frequency(times: np.ndarray, spread: np.ndarray) -> float | None:
    """Dominant frequency (Hz) of the ankle spread within STEP_BAND_HZ, or None without a clear rhythm."""
    if times.size < 8 or times[-1] - times[0] < MIN_CADENCE_SECONDS:
        return None
    step = float(np.median(np.diff(times)))
    if step <= 0:
        return None
    signal = _uniform(times, spread, step)
    trend = np.polyval(np.polyfit(np.arange(signal.size), signal, 1), np.arange(signal.size))
    signal = (signal - trend) * np.hanning(signal.size)
    padded = max(256, 1 << math.ceil(math.log2(signal.size * 4)))  # zero-padding: finer peak position
    power = np.abs(np.fft.rfft(signal, padded)) ** 2
    freqs = np.fft.rfftfreq(padded, step)
    band = (freqs >= STEP_BAND_HZ[0]) & (freqs <= min(STEP_BAND_HZ[1], 0.5 / step))
    if not band.any() or power[band].sum() <= 0:
        return None
    peak = int(np.argmax(np.where(band, power, -1.0)))
    # Share of the band's power near the peak (+-0.2 Hz): a rhythm concentrates it, noise spreads it.
    near = band & (np.abs(freqs - freqs[peak]) <= 0.2)
    if power[near].sum() / power[band].sum() < MIN_PEAK_SHARE:
        return None
    return float(freqs[peak])


def gait_signature(samples: Sequence[PoseSample]) -> GaitSignature:
    """Summarise a track's pose samples (in time order) into its body-shape and gait signature."""
    samples = sorted(samples, key=lambda s: s.timestamp)
    per_frame = [frame_proportions(s.keypoints) for s in samples]
    proportions = {}
    for name in PROPORTIONS:
        values = [p[name] for p in per_frame if name in p]
        if len(values) >= 3:  # a median of fewer frames is one bad frame away from wrong
            proportions[name] = float(np.median(values))
    times, spreads, heights, centres = [], [], [], []
    for sample in samples:
        height = _skeleton_height(sample.keypoints)
        left, right = _point(sample.keypoints, "left_ankle"), _point(sample.keypoints, "right_ankle")
        hips = _mid(sample.keypoints, "left_hip", "right_hip")
        if height is None or left is None or right is None or hips is None:
            continue
        times.append(sample.timestamp)
        spreads.append(float(np.linalg.norm(left - right)) / height)
        heights.append(height)
        centres.append(hips)
    cadence = stride = None
    if times:
        t = np.array(times)
        cadence = step_frequency(t, np.array(spreads))
        if cadence is not None:
            # Travel in heights per second: hip path smoothed over ~1 s so sway does not add length.
            path = np.array(centres)
            window = max(1, round(1.0 / float(np.median(np.diff(t)))))
            kernel = np.ones(window) / window
            smooth = np.stack([np.convolve(path[:, k], kernel, mode="valid") for k in (0, 1)], axis=1)
            h = np.convolve(np.array(heights), kernel, mode="valid")
            travelled = float(np.sum(np.linalg.norm(np.diff(smooth, axis=0), axis=1) / h[1:]))
            duration = float(t[-1] - t[0]) * (len(smooth) - 1) / max(1, len(t) - 1)
            if duration > 0:
                stride = travelled / duration / cadence
    return GaitSignature(proportions, sum(1 for p in per_frame if p), cadence, stride, len(samples))


# Within-track spread (standard deviation between quarters of one walker's track) of each component on
# vtest.avi (docs/identity.md): a difference of one scale unit is ordinary noise.
SCALES: dict[str, float] = {
    "head_neck": 0.01, "torso": 0.01, "thigh": 0.01, "shin": 0.01, "upper_arm": 0.01, "forearm": 0.02,
    "shoulder_width": 0.04, "hip_width": 0.025, "cadence_hz": 0.5, "stride_heights": 0.2,
}  # fmt: skip
# Components that varied more between walkers than within one walker's track on vtest.avi. The widths
# depend on which way the person faces, and cadence/stride at 10 fps on 40-60 px people were noise, so
# they are stored (GaitSignature.vector) but left out of the distance unless asked for.
SHAPE_COMPONENTS: tuple[str, ...] = ("head_neck", "torso", "thigh", "shin", "upper_arm")
ALL_COMPONENTS: tuple[str, ...] = (*PROPORTIONS, "cadence_hz", "stride_heights")


def signature_distance(
    a: GaitSignature, b: GaitSignature, components: Sequence[str] = SHAPE_COMPONENTS
) -> float | None:
    """RMS of the scaled differences over `components` both signatures have; None if they share none.

    About 1 between two stretches of the same walker; see docs/identity.md for how far apart different
    walkers are (not far: this is weak evidence).
    """
    index = {name: i for i, name in enumerate(ALL_COMPONENTS)}
    unknown = [c for c in components if c not in index]
    if unknown:
        raise ValueError(f"unknown gait components {unknown}; known: {list(ALL_COMPONENTS)}")
    picks = [index[c] for c in components]
    va, vb = a.vector()[picks], b.vector()[picks]
    scales = np.array([SCALES[c] for c in components], dtype=np.float32)
    shared = ~np.isnan(va) & ~np.isnan(vb)
    if not shared.any():
        return None
    return float(np.sqrt(np.mean(((va[shared] - vb[shared]) / scales[shared]) ** 2)))
