"""Recall by person height, before and after the far-people pass, and what the pass costs.

    .venv/bin/python benchmarks/far_people.py --models-dir var/models [--frames odd] [--diagnose [--oracle]]
        [--far-from FILE] [--variant NAME:key=value,...] [--truth-cache FILE] [--json]

Clips (../shared/data): vtest (480x360: below far.min_height, the pass does not run) and vtest
enlarged to 960x720 (an ordinary camera, people ~80-180 px: the pass must cost it no recall and few
extras), walking (1280x720, an overhead concourse, people about 50-150 px tall) as it is, and the same
footage as a far view: each frame shrunk to `--far-scale` of its size in the middle of
a canvas of the original size (grey around it), so every walker is that much smaller while the frame
stays large, as from a camera mounted further away. Frames are sampled at 5 frames/s (the daemon's
detect rate) and the motion regions come from camd's own motion detector run on them in order.

Truth (no labels ship): YOLOv8s (a stronger person detector than the SSD) run on the original frame at
native resolution, as overlapping 640x640 tiles plus the whole frame, merged by NMS, persons >= 0.5;
boxes mapped into the far view by the same scale. A truth box is recalled when a person detection
>= the person min_score (0.5) overlaps it at IoU >= 0.4 (small boxes are loose). Extra: person
detections >= 0.5 that overlap no truth box. Cost: detector ms per frame, with and without the pass.

Measured side by side on the same frames: the plain pass, camd's far pass as configured by default
(`far.motion_width`: its own motion regions; `far.track_height`: tiles on small open tracks, followed
with camd's tracker and the gate's box prediction over the scored frames), `--variant`s (FarConfig
fields, and gate_width: the gate's motion.frame_width) and `--far-from` another revision's far.py (with
the same config).
`--frames even|odd` scores half the sampled frames (motion still runs on all): choose parameters on
one half, report on the other. `--diagnose` tells where the people the plain pass misses are lost:
no motion region over them, their region judged explained by an overlapping detection, their tile
beyond max_tiles, tiled but missed; and the best person score near each truth box (is it just under
the 0.5 bar?). `--oracle` adds tiles centred on the truth boxes themselves: the detector's ceiling at
each tile size.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camd.config.schema import (
    CameraConfig,
    Config,
    DetectorConfig,
    FarConfig,
    MotionConfig,
    MqttConfig,
    ObjectsConfig,
    TrackerConfig,
)
from camd.geometry import covered_share, iou
from camd.pipeline import CameraPipeline
from camd.types import Box, Detection
from camd.vision import far
from camd.vision import pool as pool_module
from camd.vision.detector import create_detector, filter_detections
from camd.vision.far import _split, _tile_around, tiles_for, track_regions, unexplained_regions
from camd.vision.gate import GateFeedback
from camd.vision.motion import MotionDetector, MotionGate
from camd.vision.offline import clip_frames
from camd.vision.pool import InferencePool
from camd.vision.tracker import ObjectTracker

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
HEIGHT_BINS = [(0, 40), (40, 60), (60, 90), (90, 150), (150, 10_000)]
PERSON_MIN_SCORE = 0.5
MATCH_IOU = 0.4
TILE = 640
DETECT_FPS = 5.0
WALKER_MIN_FRAMES = 4  # a truth walker counts in the per-walker figure when scored in this many frames


def truth_boxes(yolo: Any, image: np.ndarray) -> list[Box]:
    height, width = image.shape[:2]
    found: list[Detection] = list(yolo.detect(image))
    for y in range(0, max(1, height - TILE // 2), TILE // 2):
        for x in range(0, max(1, width - TILE // 2), TILE // 2):
            x1, y1 = min(x, max(0, width - TILE)), min(y, max(0, height - TILE))
            crop = np.ascontiguousarray(image[y1 : y1 + TILE, x1 : x1 + TILE])
            for d in yolo.detect(crop):
                box = (d.box[0] + x1, d.box[1] + y1, d.box[2] + x1, d.box[3] + y1)
                found.append(Detection(d.label, d.score, box))
    found = [d for d in found if d.label == "person" and d.score >= PERSON_MIN_SCORE]
    boxes = np.array([[*d.box] for d in found], np.float32).reshape(-1, 4)
    xywh = [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in boxes.tolist()]
    keep = cv2.dnn.NMSBoxes(xywh, [d.score for d in found], PERSON_MIN_SCORE, 0.5) if found else []
    return [found[i].box for i in np.asarray(keep, int).reshape(-1)]


def far_view(image: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    height, width = image.shape[:2]
    small = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full_like(image, 110)
    ox, oy = (width - small.shape[1]) // 2, (height - small.shape[0]) // 2
    canvas[oy : oy + small.shape[0], ox : ox + small.shape[1]] = small
    return canvas, float(ox), float(oy)


def link_walkers(truths: list[list[Box]]) -> list[list[int]]:
    """Truth boxes linked into walkers across consecutive sampled frames (greedy, IoU >= 0.3): an id
    per truth box, for the per-walker figure."""
    ids: list[list[int]] = []
    next_id = 0
    for index, boxes in enumerate(truths):
        previous = list(zip(truths[index - 1], ids[index - 1], strict=True)) if index else []
        pairs = sorted(
            ((iou(b, p), i, k) for i, b in enumerate(boxes) for k, (p, _) in enumerate(previous)),
            reverse=True,
        )
        row: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for overlap, i, k in pairs:
            if overlap < 0.3:
                break
            if row[i] is None and k not in used:
                row[i], _ = previous[k][1], used.add(k)
        for i, value in enumerate(row):
            if value is None:
                row[i], next_id = next_id, next_id + 1
        ids.append([int(v) for v in row])  # type: ignore[arg-type]
    return ids


def score(
    truth: list[list[Box]], found: list[list[Detection]], walkers: list[list[int]] | None = None
) -> dict[str, Any]:
    bins = {f"{lo}-{hi if hi < 10_000 else ''}": [0, 0] for lo, hi in HEIGHT_BINS}
    extra = 0
    per_walker: dict[int, list[tuple[float, bool]]] = {}
    for frame, (boxes, detections) in enumerate(zip(truth, found, strict=True)):
        free = [d for d in detections if d.label == "person" and d.score >= PERSON_MIN_SCORE]
        for n, box in enumerate(boxes):
            height = box[3] - box[1]
            key = next(f"{lo}-{hi if hi < 10_000 else ''}" for lo, hi in HEIGHT_BINS if lo <= height < hi)
            bins[key][1] += 1
            best = max(free, key=lambda d: iou(d.box, box), default=None)
            hit = best is not None and iou(best.box, box) >= MATCH_IOU
            if hit:
                free.remove(best)
                bins[key][0] += 1
            if walkers is not None:
                per_walker.setdefault(walkers[frame][n], []).append((height, hit))
        extra += len(free)
    total = [sum(v[0] for v in bins.values()), sum(v[1] for v in bins.values())]
    mostly: dict[str, list[int]] = {}
    for seen in per_walker.values():
        if len(seen) < WALKER_MIN_FRAMES:
            continue
        key = _height_key((0.0, 0.0, 0.0, float(np.median([h for h, _ in seen]))))
        row = mostly.setdefault(key, [0, 0])
        row[0] += sum(hit for _, hit in seen) * 2 > len(seen)
        row[1] += 1
    return {
        "walkers_found_in_most_frames_by_median_height": {
            k: f"{v[0]}/{v[1]}" for k, v in sorted(mostly.items())
        },
        "recall_by_height": {
            k: {"found": v[0], "truth": v[1], "recall": v[0] / v[1] if v[1] else None}
            for k, v in bins.items()
        },
        "recall": total[0] / total[1] if total[1] else None,
        "truth": total[1],
        "extra": extra,
    }


@dataclass(frozen=True)
class Variant:
    """One far pass to measure: its config, the motion detector's frame_width its regions come from,
    and the far_pass function (camd's own, or another revision's, `--far-from`)."""

    config: FarConfig
    motion_width: int = MotionConfig().frame_width
    far_pass: Callable[..., list[Detection]] = far.far_pass


class CountedDetector:
    """A detector that counts its calls: the far pass's tiles, whatever the machine's load."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.calls += 1
        return list(self.detector.detect(image))


class TrackHints:
    """What the daemon's gate knows of a camera's open tracks, for one variant: its detections through
    camd's object filters and tracker, each track's box and velocity as GateFeedback keeps them, and
    their boxes predicted for the next frame (the `hints` the far pass gets)."""

    def __init__(self) -> None:
        self.config = TrackerConfig()
        self.tracker = ObjectTracker(self.config, fps=DETECT_FPS)
        self.feedback = GateFeedback(MotionGate(MotionConfig()), replay=False)
        self.seen: dict[int, tuple[Box, float]] = {}

    def predict(self, timestamp: float) -> list[Box]:
        return [motion.box_at(timestamp) for motion in self.feedback.motion.values()]

    def update(self, detections: list[Detection], timestamp: float) -> None:
        for tracked in self.tracker.update(filter_detections(detections, ObjectsConfig()), timestamp):
            self.seen[tracked.track_id] = (tracked.detection.box, timestamp)
        self.seen = {k: v for k, v in self.seen.items() if timestamp - v[1] <= self.config.lost_track_s}
        self.feedback.moved(self.seen, timestamp)


def run(
    frames: list[np.ndarray],
    truths: list[list[Box]],
    scale: float,
    detector: Any,
    variants: dict[str, Variant],
    keep: Callable[[int], bool],
    diagnosis: bool = False,
    oracle: bool = False,
) -> dict[str, Any]:
    """Motion runs on every frame in order (one motion detector per frame_width); the frames `keep(index)`
    accepts are detected and scored: the plain pass, then each far-pass variant on the same detections,
    timed side by side."""
    motions = {
        v.motion_width: MotionDetector(MotionConfig(frame_width=v.motion_width)) for v in variants.values()
    }
    # The far pass's own motion (far.motion_width): every region, whatever the gate's min_area.
    far_motions = {
        v.config.motion_width: MotionDetector(MotionConfig(frame_width=v.config.motion_width, min_area=0.0))
        for v in variants.values()
        if v.config.motion_width
    }
    hinters = {name: TrackHints() for name, v in variants.items() if v.config.track_height > 0}
    motion_ms: dict[str, list[float]] = {f"gate {w}": [] for w in motions} | {
        f"far {w}": [] for w in far_motions
    }
    views: list[dict[str, Any]] = []
    ms: dict[str, list[float]] = {"plain": [], **{name: [] for name in variants}}
    tiles = dict.fromkeys(variants, 0)
    inferences = dict.fromkeys(variants, 0)  # the pass's extra detector calls (its cost, load-free)
    kept_truth: list[list[Box]] = []
    for index, (image, boxes) in enumerate(zip(frames, truths, strict=True)):
        if scale != 1.0:
            image, ox, oy = far_view(image, scale)
            boxes = [
                (b[0] * scale + ox, b[1] * scale + oy, b[2] * scale + ox, b[3] * scale + oy) for b in boxes
            ]
        regions = {}
        for width, motion in motions.items():
            started = time.perf_counter()
            regions[width] = [tuple(float(v) for v in r) for r in motion.update(image).boxes]
            motion_ms[f"gate {width}"].append((time.perf_counter() - started) * 1000.0)
        far_seen: dict[int, list[Box]] = {}
        for width, motion in far_motions.items():
            started = time.perf_counter()
            far_seen[width] = [tuple(float(v) for v in r) for r in motion.update(image).boxes]  # type: ignore[misc]
            motion_ms[f"far {width}"].append((time.perf_counter() - started) * 1000.0)
        if not keep(index):
            continue
        kept_truth.append(boxes)
        timestamp = index / DETECT_FPS
        started = time.perf_counter()
        detections = detector.detect(image)
        plain_ms = (time.perf_counter() - started) * 1000.0
        ms["plain"].append(plain_ms)
        view: dict[str, Any] = {"image": image, "truth": boxes, "plain": detections}
        for name, variant in variants.items():
            extra: dict[str, Any] = {}
            if name in hinters:
                extra["hints"] = hinters[name].predict(timestamp)
            width = variant.config.motion_width
            seen = far_seen[width] if width else regions[variant.motion_width]
            counted = CountedDetector(detector)
            started = time.perf_counter()
            more = variant.far_pass(counted, image, detections, seen, variant.config, **extra)
            inferences[name] += counted.calls
            ms[name].append(plain_ms + (time.perf_counter() - started) * 1000.0)
            if name in hinters:
                hinters[name].update(more, timestamp)
            tiles[name] += more is not detections
            view[name] = more
            view[f"{name} regions"] = seen
            view[f"{name} hints"] = extra.get("hints", [])
        views.append(view)
    all_ids = link_walkers(truths)
    walker_ids = [ids for index, ids in enumerate(all_ids) if keep(index)]
    report: dict[str, Any] = {
        "frames": len(views),
        "frame": f"{image.shape[1]}x{image.shape[0]}",
        "scale": scale,
        "plain": score([v["truth"] for v in views], [v["plain"] for v in views], walker_ids),
        "detector_ms_mean": {name: float(np.mean(v)) for name, v in ms.items()},
        "motion_ms_mean": {name: float(np.mean(v)) for name, v in motion_ms.items()},
        "frames_with_far_tiles": tiles,
        "far_inferences_per_frame": {name: n / max(1, len(views)) for name, n in inferences.items()},
    }
    for name in variants:
        report[name] = score([v["truth"] for v in views], [v[name] for v in views], walker_ids)
    if diagnosis:
        report["diagnosis"] = {
            name: diagnose(
                [
                    {**v, "far": v[name], "regions": v[f"{name} regions"], "hints": v[f"{name} hints"]}
                    for v in views
                ],
                detector,
                variant.config,
                oracle and i == 0,
            )
            for i, (name, variant) in enumerate(variants.items())
        }
    return report


ORACLE_SIDES = (96, 128, 160, 224, 320)
ORACLE_PER_HEIGHT = (1.5, 2.0, 2.5, 3.0)
SCORE_BINS = ((0.0, 0.25, "none"), (0.25, 0.35, "0.25-0.35"), (0.35, 0.5, "0.35-0.5"), (0.5, 1.01, ">=0.5"))


def _height_key(box: Box) -> str:
    height = box[3] - box[1]
    return next(f"{lo}-{hi if hi < 10_000 else ''}" for lo, hi in HEIGHT_BINS if lo <= height < hi)


def _best_score(detections: list[Detection], box: Box) -> float:
    """The highest person score (any, down to the detector's floor) overlapping `box` at MATCH_IOU."""
    return max(
        (d.score for d in detections if d.label == "person" and iou(d.box, box) >= MATCH_IOU), default=0.0
    )


def _detect_in(detector: Any, image: np.ndarray, tile: Box) -> list[Detection]:
    tx1, ty1, tx2, ty2 = (int(v) for v in tile)
    crop = np.ascontiguousarray(image[ty1:ty2, tx1:tx2])
    return [
        Detection(d.label, d.score, (d.box[0] + tx1, d.box[1] + ty1, d.box[2] + tx1, d.box[3] + ty1))
        for d in detector.detect(crop)
    ]


def diagnose(views: list[dict[str, Any]], detector: Any, config: FarConfig, oracle: bool) -> dict[str, Any]:
    """Where the truth boxes the plain pass misses are lost. Per height bin: the fate of each missed box
    (no motion region over it; its region judged explained by a detection; its tile beyond max_tiles;
    no tile over it; tiled but the detector missed it), and the best person score near every truth box
    (plain pass and far pass). With `oracle`: a tile centred on the truth box itself, at the far pass's
    own sizing rule and at fixed sides, is the detector's ceiling at that enlargement."""
    fates: dict[str, dict[str, int]] = {}
    scores: dict[str, dict[str, dict[str, int]]] = {"plain": {}, "far": {}}
    tiled_enlargement: dict[str, list[float]] = {}
    part_over_truth: dict[str, list[float]] = {}
    oracles: dict[str, dict[str, list[int]]] = {}
    regions_per_frame: list[int] = []
    unexplained_per_frame: list[int] = []
    for view in views:
        image, truth, regions = view["image"], view["truth"], view["regions"]
        plain, far = view["plain"], view["far"]
        height, width = image.shape[:2]
        tracked = (
            track_regions(view["hints"], plain, width, height, config.track_height)
            if config.track_height
            else []
        )
        todo = tracked + unexplained_regions(regions, plain, config.tile)
        regions_per_frame.append(len(regions))
        unexplained_per_frame.append(len(todo))
        used = tiles_for(todo, width, height, config.tile, config.max_tiles)
        every = tiles_for(todo, width, height, config.tile, 10_000)
        parts = _split(regions, config.tile)
        for box in truth:
            key = _height_key(box)
            for stage, found in (("plain", plain), ("far", far)):
                best = _best_score(found, box)
                name = next(n for lo, hi, n in SCORE_BINS if lo <= best < hi)
                row = scores[stage].setdefault(key, {n: 0 for _, _, n in SCORE_BINS})
                row[name] += 1
            if oracle:
                row_o = oracles.setdefault(key, {})
                for label, side in [*((f"{f}x height", f * (box[3] - box[1])) for f in ORACLE_PER_HEIGHT),
                                    *((f"{s} px", float(s)) for s in ORACLE_SIDES)]:  # fmt: skip
                    hit = _best_score(
                        _detect_in(detector, image, _tile_around(box, side, width, height)), box
                    )
                    row_o.setdefault(label, [0, 0])
                    row_o[label][0] += hit >= PERSON_MIN_SCORE
                    row_o[label][1] += 1
            if _best_score(plain, box) >= PERSON_MIN_SCORE:
                fate = "plain pass finds it"
            elif not any(covered_share(box, r) >= 0.5 for r in regions) and not any(
                covered_share(box, r) > 0 for r in tracked
            ):
                fate = "no motion region (nor track)"
            elif not any(covered_share(box, r) > 0 for r in todo):
                fate = "region explained by a detection (no track)"
            elif any(covered_share(box, t) >= 0.9 for t in used):
                fate = (
                    "tiled, detector misses" if _best_score(far, box) < PERSON_MIN_SCORE else "tiled, found"
                )
                side = max(t[2] - t[0] for t in used if covered_share(box, t) >= 0.9)
                tiled_enlargement.setdefault(key, []).append(300.0 / side * (box[3] - box[1]))
            elif any(covered_share(box, t) >= 0.9 for t in every):
                fate = "beyond max_tiles"
            else:
                fate = "no tile holds it whole"
            if fate not in ("plain pass finds it", "no motion region (nor track)"):
                over = [p for p in parts if covered_share(box, p) > 0]
                if over:
                    biggest = max(max(p[2] - p[0], p[3] - p[1]) for p in over)
                    part_over_truth.setdefault(key, []).append(biggest / (box[3] - box[1]))
            fates.setdefault(key, {})
            fates[key][fate] = fates[key].get(fate, 0) + 1
    out: dict[str, Any] = {
        "fate_by_height": fates,
        "best_person_score_by_height": scores,
        "regions_per_frame_mean": float(np.mean(regions_per_frame)) if regions_per_frame else 0.0,
        "unexplained_per_frame_mean": float(np.mean(unexplained_per_frame)) if unexplained_per_frame else 0.0,
        "tiled_person_px_in_input_median": {k: float(np.median(v)) for k, v in tiled_enlargement.items()},
        "region_part_side_over_person_height_median": {
            k: float(np.median(v)) for k, v in part_over_truth.items()
        },
    }
    if oracle:
        out["oracle_recall_by_height"] = {
            k: {label: f"{v[0]}/{v[1]} ({v[0] / v[1]:.0%})" for label, v in row.items()}
            for k, row in oracles.items()
        }
    return out


def run_pipeline(
    path: Path,
    detector: Any,
    far_config: FarConfig,
    models_dir: Path,
    far_pass: Callable[..., list[Detection]] | None = None,
) -> dict[str, Any]:
    """The clip at `path` through camd's own CameraPipeline (gate, pool with this far pass, tracker,
    flow): the boxes of the announced tracks it believes in each frame, and what the detector did.
    `far_pass`: another revision's (`--far-from`) in the pool's place, for this run."""
    if far_pass is not None:
        original = pool_module.far_pass
        pool_module.far_pass = far_pass
        try:
            return run_pipeline(path, detector, far_config, models_dir)
        finally:
            pool_module.far_pass = original
    config = Config(
        models_dir=models_dir,
        detector=DetectorConfig(far=far_config),
        mqtt=MqttConfig(enabled=False),
        cameras={"c": CameraConfig(url=str(path), detect_fps=DETECT_FPS)},
    )
    pool = InferencePool([detector], far=far_config).start()
    believed: dict[int, list[Detection]] = {}
    pipeline = CameraPipeline("c", config, pool, lambda _event: None, threading.Event())
    pipeline.on_frame = partial(_believe, believed)
    pipeline.run()
    pool.stop()
    return {
        "believed": believed,
        "frames": pipeline.stats.frames,
        "detected": pipeline.stats.frames - pipeline.stats.skipped,
        "detector_ms": float(sum(pipeline.stats.detect_ms)),
    }


def _believe(believed: dict[int, list[Detection]], frame: Any, _detected: bool, seen: list[Any]) -> None:
    believed[frame.index] = [Detection("person", 1.0, box) for _, box in seen]


def daemon_runs(
    clip: Path, truths: list[list[Box]], scale: float, models_dir: Path, variants: dict[str, FarConfig]
) -> dict[str, Any]:
    """camd's own camera pipeline (motion gate, inference pool with the far pass, tracker, flow between
    detections) on the far view written as a file (mp4v) and replayed at 5 detect frames/s, per far-pass
    config: the boxes of the announced tracks it believes in each sampled frame (detected, followed or
    predicted) against the truth, by height, and the detector's time (its total, all frames)."""
    import tempfile


    detector = create_detector(DetectorConfig(), models_dir)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "far_view.mp4"
        capture = cv2.VideoCapture(str(clip))
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        writer: Any = None
        while True:
            ok, image = capture.read()
            if not ok:
                break
            view, ox, oy = far_view(image, scale)
            if writer is None:
                size = (view.shape[1], view.shape[0])
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            writer.write(view)
        capture.release()
        writer.release()
        boxes = [
            [(b[0] * scale + ox, b[1] * scale + oy, b[2] * scale + ox, b[3] * scale + oy) for b in t]
            for t in truths
        ]
        for name, far_config in variants.items():
            run = run_pipeline(path, detector, far_config, models_dir)
            believed = run["believed"]
            result = score(boxes, [believed.get(i, []) for i in range(len(boxes))])
            out[name] = {
                "recall_by_height": result["recall_by_height"],
                "recall": result["recall"],
                "frames": run["frames"],
                "detected_frames": run["detected"],
                "detector_ms_total": run["detector_ms"],
            }
    return out


def load_far_pass(path: Path) -> Callable[..., list[Detection]]:
    """`far_pass` from another revision's far.py (git show REV:camd/vision/far.py > FILE)."""
    spec = importlib.util.spec_from_file_location("far_from", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module.far_pass  # type: ignore[no-any-return]


def enlarged(
    frames: list[np.ndarray], truths: list[list[Box]], factor: float
) -> tuple[list[np.ndarray], list[list[Box]]]:
    """Frames and truth boxes enlarged `factor` times: vtest as from an ordinary 720p camera (people
    ~80-180 px), tall enough for the far pass to run."""
    size = [(round(f.shape[1] * factor), round(f.shape[0] * factor)) for f in frames]
    return (
        [cv2.resize(f, wh, interpolation=cv2.INTER_LINEAR) for f, wh in zip(frames, size, strict=True)],
        [[tuple(v * factor for v in b) for b in t] for t in truths],  # type: ignore[misc]
    )


def clip_truth(
    clip: Path, max_frames: int, models_dir: Path, cache: Path | None
) -> tuple[list[np.ndarray], list[list[Box]]]:
    """A clip's frames sampled at the detect rate, and their truth boxes (from `cache` when kept)."""
    frames = [f.image for f in clip_frames(str(clip), detect_fps=DETECT_FPS, max_frames=max_frames)]
    if cache is not None and cache.is_file():
        return frames, [[tuple(b) for b in boxes] for boxes in json.loads(cache.read_text())]
    yolo = create_detector(DetectorConfig(backend="yolo"), models_dir)
    truths = [truth_boxes(yolo, image) for image in frames]
    if cache is not None:
        cache.write_text(json.dumps(truths))
    return frames, truths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--far-scale", type=float, default=0.5)
    parser.add_argument("--max-frames", type=int, default=60)
    parser.add_argument("--max-tiles", type=int, default=FarConfig().max_tiles)
    parser.add_argument(
        "--frames", choices=("all", "even", "odd"), default="all",
        help="sampled frames scored (motion runs on all): choose parameters on one half, report on the other",
    )  # fmt: skip
    parser.add_argument("--diagnose", action="store_true", help="where the missed people are lost")
    parser.add_argument(
        "--oracle", action="store_true", help="with --diagnose: tiles centred on the truth boxes"
    )
    parser.add_argument(
        "--variant", action="append", default=[],
        help="NAME:key=value,... another far pass: FarConfig fields, and gate_width (motion.frame_width)",
    )  # fmt: skip
    parser.add_argument(
        "--far-from", type=Path, default=None,
        help="another revision's far.py (git show REV:camd/vision/far.py > FILE), measured beside this one",
    )  # fmt: skip
    parser.add_argument("--truth-cache", type=Path, default=None, help="a JSON file: truth boxes, kept")
    parser.add_argument(
        "--daemon", action="store_true",
        help="only: the far view replayed through camd's own camera pipeline; far pass off, on the gate's "
        "regions with no track tiles, default",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    clip = SHARED / "video" / "supervision_walking.mp4"
    if not clip.is_file():
        print(f"needs the shared clips in {SHARED}", file=sys.stderr)
        return 2
    detector = create_detector(DetectorConfig(), args.models_dir)
    config = FarConfig(max_tiles=args.max_tiles)
    variants: dict[str, Variant] = {}
    if args.far_from is not None:
        # the other revision's far pass with the same config (its own motion, track tiles)
        variants["far (--far-from)"] = Variant(config, far_pass=load_far_pass(args.far_from))
    variants["far"] = Variant(config)
    for spec_text in args.variant:  # NAME:key=value,key=value (choosing parameters)
        name, _, pairs = spec_text.partition(":")
        update = {k: json.loads(v) for k, v in (pair.split("=") for pair in pairs.split(",") if pair)}
        width = update.pop("gate_width", MotionConfig().frame_width)
        variants[name] = Variant(FarConfig(**{**config.model_dump(), **update}), motion_width=width)
    frames, truths = clip_truth(clip, args.max_frames, args.models_dir, args.truth_cache)
    vtest = clip_truth(
        SHARED / "video" / "vtest.avi",
        args.max_frames,
        args.models_dir,
        None
        if args.truth_cache is None
        else args.truth_cache.with_name(args.truth_cache.stem + "-vtest.json"),
    )
    if args.daemon:
        runs = daemon_runs(
            clip,
            truths,
            args.far_scale,
            args.models_dir,
            {
                "off": FarConfig(enabled=False),
                "gate regions, no track tiles": FarConfig(motion_width=0, track_height=0.0),
                "default": FarConfig(),
            },
        )
        if args.json:
            print(json.dumps(runs, indent=1))
            return 0
        for name, r in runs.items():
            bins = "  ".join(
                f"{k}px {v['found']}/{v['truth']}" for k, v in r["recall_by_height"].items() if v["truth"]
            )
            print(f"{name:<30} {r['detected_frames']}/{r['frames']} frames detected, detector "
                  f"{r['detector_ms_total']:.0f} ms in all; believed boxes on truth: "
                  f"{r['recall']:.3f} ({bins})")  # fmt: skip
        return 0
    keep = {"all": lambda i: True, "even": lambda i: i % 2 == 0, "odd": lambda i: i % 2 == 1}[args.frames]
    report = {
        "variants": {
            name: {**v.config.model_dump(), "gate_width": v.motion_width} for name, v in variants.items()
        },
        "scored_frames": args.frames,
        "walking": run(frames, truths, 1.0, detector, variants, keep),
        "walking_far_view": run(
            frames, truths, args.far_scale, detector, variants, keep, args.diagnose, args.oracle
        ),
        "vtest": run(*vtest, 1.0, detector, variants, keep),
        "vtest_960x720": run(*enlarged(*vtest, 2.0), 1.0, detector, variants, keep),
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for name in ("walking", "walking_far_view", "vtest", "vtest_960x720"):
        r = report[name]
        cost = ", ".join(f"{k} {v:.1f}" for k, v in r["detector_ms_mean"].items())
        plain_ms = r["detector_ms_mean"]["plain"]
        cost += " | ratio " + ", ".join(f"{k} {v / plain_ms:.2f}x" for k, v in r["detector_ms_mean"].items())
        cost += " | motion ms/frame " + ", ".join(f"{k} {v:.2f}" for k, v in r["motion_ms_mean"].items())
        calls = ", ".join(f"{k} {v:.2f}" for k, v in r["far_inferences_per_frame"].items())
        print(f"{name} ({r['frame']}, scale {r['scale']}, {r['frames']} {args.frames} frames, far tiles on "
              f"{r['frames_with_far_tiles']}; tiles per frame: {calls}): "
              f"detector ms/frame: {cost}")  # fmt: skip
        for stage in ("plain", *variants):
            s = r[stage]
            bins = "  ".join(
                f"{k}px {v['found']}/{v['truth']}" for k, v in s["recall_by_height"].items() if v["truth"]
            )
            print(f"  {stage:<30} recall {s['recall']:.3f} ({bins}), extra {s['extra']}")
            most = s["walkers_found_in_most_frames_by_median_height"]
            print(f"  {'':<30} walkers found in most of their frames: "
                  + "  ".join(f"{k}px {v}" for k, v in most.items()))  # fmt: skip
        if "diagnosis" in r:
            print(json.dumps(r["diagnosis"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
