"""Recall by person height, before and after the far-people pass, and what the pass costs.

    .venv/bin/python benchmarks/far_people.py --models-dir var/models [--json]

Clips (../shared/data): walking (1280x720, an overhead concourse, people about 50-150 px tall) as it
is, and the same footage as a far view: each frame shrunk to `--far-scale` of its size in the middle of
a canvas of the original size (grey around it), so every walker is that much smaller while the frame
stays large, as from a camera mounted further away. Frames are sampled at 5 frames/s (the daemon's
detect rate) and the motion regions come from camd's own motion detector run on them in order.

Truth (no labels ship): YOLOv8s (a stronger person detector than the SSD) run on the original frame at
native resolution, as overlapping 640x640 tiles plus the whole frame, merged by NMS, persons >= 0.5;
boxes mapped into the far view by the same scale. A truth box is recalled when a person detection
>= the person min_score (0.5) overlaps it at IoU >= 0.4 (small boxes are loose). Extra: person
detections >= 0.5 that overlap no truth box. Cost: detector ms per frame, with and without the pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camd.config.schema import DetectorConfig, FarConfig, MotionConfig
from camd.geometry import iou
from camd.types import Box, Detection
from camd.vision.detector import create_detector
from camd.vision.far import far_pass
from camd.vision.motion import MotionDetector
from camd.vision.offline import clip_frames

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
HEIGHT_BINS = [(0, 40), (40, 60), (60, 90), (90, 150), (150, 10_000)]
PERSON_MIN_SCORE = 0.5
MATCH_IOU = 0.4
TILE = 640


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


def score(truth: list[list[Box]], found: list[list[Detection]]) -> dict[str, Any]:
    bins = {f"{lo}-{hi if hi < 10_000 else ''}": [0, 0] for lo, hi in HEIGHT_BINS}
    extra = 0
    for boxes, detections in zip(truth, found, strict=True):
        free = [d for d in detections if d.label == "person" and d.score >= PERSON_MIN_SCORE]
        for box in boxes:
            height = box[3] - box[1]
            key = next(f"{lo}-{hi if hi < 10_000 else ''}" for lo, hi in HEIGHT_BINS if lo <= height < hi)
            bins[key][1] += 1
            best = max(free, key=lambda d: iou(d.box, box), default=None)
            if best is not None and iou(best.box, box) >= MATCH_IOU:
                free.remove(best)
                bins[key][0] += 1
        extra += len(free)
    total = [sum(v[0] for v in bins.values()), sum(v[1] for v in bins.values())]
    return {
        "recall_by_height": {
            k: {"found": v[0], "truth": v[1], "recall": v[0] / v[1] if v[1] else None}
            for k, v in bins.items()
        },
        "recall": total[0] / total[1] if total[1] else None,
        "truth": total[1],
        "extra": extra,
    }


def run(
    frames: list[np.ndarray], truths: list[list[Box]], scale: float, detector: Any, config: FarConfig
) -> dict[str, Any]:
    motion = MotionDetector(MotionConfig())
    truth: list[list[Box]] = []
    plain: list[list[Detection]] = []
    far: list[list[Detection]] = []
    plain_ms: list[float] = []
    far_ms: list[float] = []
    tiles = 0
    for image, boxes in zip(frames, truths, strict=True):
        if scale != 1.0:
            image, ox, oy = far_view(image, scale)
            boxes = [
                (b[0] * scale + ox, b[1] * scale + oy, b[2] * scale + ox, b[3] * scale + oy) for b in boxes
            ]
        regions = [tuple(float(v) for v in r) for r in motion.update(image).boxes]
        started = time.perf_counter()
        detections = detector.detect(image)
        plain_ms.append((time.perf_counter() - started) * 1000.0)
        more = far_pass(detector, image, detections, regions, config)  # type: ignore[arg-type]
        far_ms.append((time.perf_counter() - started) * 1000.0)
        tiles += more is not detections
        truth.append(boxes)
        plain.append(detections)
        far.append(more)
    return {
        "frames": len(truth),
        "frame": f"{image.shape[1]}x{image.shape[0]}",
        "scale": scale,
        "before": score(truth, plain),
        "after": score(truth, far),
        "frames_with_far_tiles": tiles,
        "detector_ms_mean_before": float(np.mean(plain_ms)),
        "detector_ms_mean_after": float(np.mean(far_ms)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--far-scale", type=float, default=0.5)
    parser.add_argument("--max-frames", type=int, default=60)
    parser.add_argument("--max-tiles", type=int, default=FarConfig().max_tiles)
    parser.add_argument("--truth-cache", type=Path, default=None, help="a JSON file: truth boxes, kept")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    clip = SHARED / "video" / "supervision_walking.mp4"
    if not clip.is_file():
        print(f"needs the shared clips in {SHARED}", file=sys.stderr)
        return 2
    detector = create_detector(DetectorConfig(), args.models_dir)
    yolo = create_detector(DetectorConfig(backend="yolo"), args.models_dir)
    config = FarConfig(max_tiles=args.max_tiles)
    frames = [f.image for f in clip_frames(str(clip), detect_fps=5.0, max_frames=args.max_frames)]
    cache = args.truth_cache
    if cache is not None and cache.is_file():
        truths = [[tuple(b) for b in boxes] for boxes in json.loads(cache.read_text())]
    else:
        truths = [truth_boxes(yolo, image) for image in frames]
        if cache is not None:
            cache.write_text(json.dumps(truths))
    report = {
        "far_config": config.model_dump(),
        "walking": run(frames, truths, 1.0, detector, config),
        "walking_far_view": run(frames, truths, args.far_scale, detector, config),
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for name in ("walking", "walking_far_view"):
        r = report[name]
        print(f"{name} ({r['frame']}, scale {r['scale']}, {r['frames']} frames, far tiles on "
              f"{r['frames_with_far_tiles']}): detector {r['detector_ms_mean_before']:.1f} -> "
              f"{r['detector_ms_mean_after']:.1f} ms/frame")  # fmt: skip
        for stage in ("before", "after"):
            s = r[stage]
            bins = "  ".join(
                f"{k}px {v['found']}/{v['truth']}" for k, v in s["recall_by_height"].items() if v["truth"]
            )
            print(f"  {stage:<6} recall {s['recall']:.3f} ({bins}), extra {s['extra']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
