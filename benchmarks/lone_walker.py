"""A lone far walker on a quiet camera: is he followed? And what does waking for him cost?

    .venv/bin/python benchmarks/lone_walker.py --models-dir var/models [--part even|odd|all]
        [--variant NAME:key=value,...] [--far-from FILE] [--truth-cache FILE] [--json]

Clips composed from supervision_walking's far view (benchmarks/far_people.py: each frame halved in the
middle of a 1280x720 grey canvas), sampled at 5 frames/s: the background is the per-pixel median of the
sampled frames; each clip holds ONE truth walker (YOLOv8s boxes linked across frames, as far_people.py
does), his box cut from the real far-view frame and pasted on the background, frame by frame, with
sensor noise (sigma 1.5) on every frame. Each clip is written as a file (mp4v) and replayed through
camd's own CameraPipeline with the default motion settings (gate, feedback, inference pool, far pass,
tracker, flow), once per variant of the far pass. Figure: the share of his frames in which an announced
track's box (detected, followed or predicted) lies on him (IoU >= 0.4), by his median height.
`--part even|odd`: walkers with an even / odd index (choose parameters on one, report on the other).

Cost, in the same run: detector calls per second and detector time on 60 s of the empty background
with sensor noise sigma 1.5 (quiet); with more noise, a global flicker and a patch of the scene
swaying (windy, stormy); with six squares of full-contrast foliage texture swaying 8 px (small and
large leaves: motion the gate's own copy misses, the far motion sees); and `--crowd`: walking as it
is and its far view (60 sampled frames) through the pipeline, recall of the believed boxes and
detector time per variant. `--cost-only`: no walker clips.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.far_people import (
    DETECT_FPS,
    MATCH_IOU,
    SHARED,
    clip_truth,
    far_view,
    link_walkers,
    load_far_pass,
    run_pipeline,
    score,
)
from camd.config.schema import DetectorConfig, FarConfig
from camd.geometry import iou
from camd.types import Box
from camd.vision.detector import create_detector

REPO = Path(__file__).resolve().parents[1]
BINS = [(40, 60), (60, 90)]
MIN_WALKER_FRAMES = 10  # 2 s at 5 frames/s
NOISE_SEED = 7


def write_clip(path: Path, frames: Iterator[np.ndarray]) -> int:
    writer: Any = None
    count = 0
    for image in frames:
        if writer is None:
            size = (image.shape[1], image.shape[0])
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), DETECT_FPS, size)
        writer.write(image)
        count += 1
    writer.release()
    return count


def noisy(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(image.astype(np.float32) + rng.normal(0.0, sigma, image.shape), 0, 255).astype(np.uint8)


def lone_walker_frames(
    background: np.ndarray, views: list[np.ndarray], boxes: dict[int, Box], rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """One second of background, then his frames (his box pasted from the real view), then one second."""
    pad = int(DETECT_FPS)
    first, last = min(boxes), max(boxes)
    for index in range(first - pad, last + pad + 1):
        image = background.copy()
        if index in boxes:
            x1, y1, x2, y2 = (round(v) for v in boxes[index])
            image[y1:y2, x1:x2] = views[index][y1:y2, x1:x2]
        yield noisy(image, 1.5, rng)


def windy_frames(
    background: np.ndarray, seconds: float, rng: np.random.Generator, shift: int, flicker: float, sigma: float
) -> Iterator[np.ndarray]:
    """The empty scene with sensor noise `sigma`, a global flicker (+-`flicker` grey levels) and a
    240x160 patch of it (inside the far view's picture) shifted by up to `shift` px each frame: leaves
    in the wind."""
    height, width = background.shape[:2]
    y, x, h, w = height // 2 - 80, width // 2 + 40, 160, 240
    patch = background[y - shift : y + h + shift, x - shift : x + w + shift].astype(np.float32)
    for _ in range(int(seconds * DETECT_FPS)):
        image = background.astype(np.float32) + rng.uniform(-flicker, flicker)
        dx, dy = rng.integers(-shift, shift + 1, size=2)
        image[y : y + h, x : x + w] = patch[shift + dy : shift + dy + h, shift + dx : shift + dx + w]
        yield noisy(np.clip(image, 0, 255).astype(np.uint8), sigma, rng)


def leaves_frames(
    background: np.ndarray, seconds: float, rng: np.random.Generator, size: int
) -> Iterator[np.ndarray]:
    """The empty scene with sensor noise 1.5 and six `size` px squares of high-contrast texture (foliage)
    inside the far view's picture, each shifted by up to 8 px each frame: small leaves in the wind, too
    small for the gate's own motion (min_area) when `size` is small."""
    height, width = background.shape[:2]
    blobs = cv2.GaussianBlur(rng.uniform(0, 255, (size + 16, size + 16, 3)).astype(np.float32), (0, 0), 4)
    texture = cv2.normalize(blobs, None, 0, 255, cv2.NORM_MINMAX)  # clumps of ~10 px, full contrast
    spots = [(height // 2 + dy, width // 2 + dx) for dy in (-100, 60) for dx in (-250, -20, 200)]
    for _ in range(int(seconds * DETECT_FPS)):
        image = background.copy()
        for y, x in spots:
            dx, dy = rng.integers(0, 17, size=2)
            image[y : y + size, x : x + size] = np.clip(texture[dy : dy + size, dx : dx + size], 0, 255)
        yield noisy(image, 1.5, rng)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--part", choices=("all", "even", "odd"), default="all")
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=value,... (FarConfig)")
    parser.add_argument("--truth-cache", type=Path, default=None)
    parser.add_argument(
        "--far-from", type=Path, default=None,
        help="another revision's far.py, measured beside this one (default config), instead of wake off",
    )  # fmt: skip
    parser.add_argument("--crowd", action="store_true", help="also walking as it is and its far view")
    parser.add_argument("--max-walkers", type=int, default=100)
    parser.add_argument("--cost-only", action="store_true", help="only the empty scenes (and --crowd)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    clip = SHARED / "video" / "supervision_walking.mp4"
    variants = {"main (wake off)": FarConfig(wake_every_s=0.0), "default": FarConfig()}
    passes: dict[str, Any] = {}
    if args.far_from is not None:
        variants = {"far (--far-from)": FarConfig(), "default": FarConfig()}
        passes["far (--far-from)"] = load_far_pass(args.far_from)
    for text in args.variant:
        name, _, pairs = text.partition(":")
        update = {k: json.loads(v) for k, v in (p.split("=") for p in pairs.split(",") if p)}
        variants[name] = FarConfig(**update)
    detector = create_detector(DetectorConfig(), args.models_dir)
    frames, truths = clip_truth(clip, 60, args.models_dir, args.truth_cache)
    views, scaled = [], []
    for image, boxes in zip(frames, truths, strict=True):
        view, ox, oy = far_view(image, 0.5)
        views.append(view)
        scaled.append([(b[0] * 0.5 + ox, b[1] * 0.5 + oy, b[2] * 0.5 + ox, b[3] * 0.5 + oy) for b in boxes])
    background = np.median(np.stack(views), axis=0).astype(np.uint8)
    walkers = []
    linked: dict[int, dict[int, Box]] = {}
    for i, ids in enumerate(link_walkers(scaled)):
        for k, walker in enumerate(ids):
            linked.setdefault(walker, {})[i] = scaled[i][k]
    for boxes in linked.values():
        if len(boxes) < MIN_WALKER_FRAMES:
            continue
        height = float(np.median([b[3] - b[1] for b in boxes.values()]))
        if any(lo <= height < hi for lo, hi in BINS):
            walkers.append((height, boxes))
    keep = {"all": lambda i: True, "even": lambda i: i % 2 == 0, "odd": lambda i: i % 2 == 1}[args.part]
    walkers = [w for i, w in enumerate(walkers) if keep(i)][: 0 if args.cost_only else args.max_walkers]
    rng = np.random.default_rng(NOISE_SEED)
    report: dict[str, Any] = {"part": args.part, "walkers": len(walkers), "lone": {}, "cost": {}}
    with tempfile.TemporaryDirectory() as folder:
        per: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for n, (height, boxes) in enumerate(walkers):
            path = Path(folder) / f"walker{n}.mp4"
            count = write_clip(path, lone_walker_frames(background, views, boxes, rng))
            offset = min(boxes) - int(DETECT_FPS)  # clip frame i is view frame i + offset
            for name, far_config in variants.items():
                r = run_pipeline(path, detector, far_config, args.models_dir, passes.get(name))
                on = [
                    any(iou(d.box, box) >= MATCH_IOU for d in r["believed"].get(i - offset, []))
                    for i, box in boxes.items()
                ]
                first = next((k for k, hit in enumerate(on) if hit), None)
                extra = sum(
                    1
                    for i in range(count)
                    for d in r["believed"].get(i, [])
                    if i + offset not in boxes or iou(d.box, boxes[i + offset]) < MATCH_IOU
                )
                per[name].append(
                    {
                        "height": round(height, 1),
                        "frames": len(on),
                        "on_him": sum(on),
                        "first_on_him_s": None if first is None else first / DETECT_FPS,
                        "extra_boxes": extra,  # believed boxes not on him at IoU >= 0.4
                        "extra_boxes_not_touching_him": sum(
                            1
                            for i in range(count)
                            for d in r["believed"].get(i, [])
                            if i + offset not in boxes or iou(d.box, boxes[i + offset]) == 0.0
                        ),
                        "detected": r["detected"],
                        "clip_frames": count,
                        "detector_ms": round(r["detector_ms"], 1),
                    }
                )
        for name, rows in per.items():
            summary = {}
            for lo, hi in BINS:
                sel = [w for w in rows if lo <= w["height"] < hi]
                on, total = sum(w["on_him"] for w in sel), sum(w["frames"] for w in sel)
                summary[f"{lo}-{hi}"] = {
                    "walkers": len(sel),
                    "frames_on_him": f"{on}/{total} ({on / max(1, total):.1%})",
                    "walkers_followed_in_most_frames": sum(1 for w in sel if w["on_him"] > w["frames"] / 2),
                }
            summary["detected_per_s"] = round(
                sum(w["detected"] for w in rows) / max(1, sum(w["clip_frames"] for w in rows)) * DETECT_FPS, 2
            )
            summary["extra_boxes"] = sum(w["extra_boxes"] for w in rows)
            summary["extra_boxes_not_touching_him"] = sum(w["extra_boxes_not_touching_him"] for w in rows)
            firsts = [w["first_on_him_s"] for w in rows if w["first_on_him_s"] is not None]
            summary["median_first_on_him_s"] = float(np.median(firsts)) if firsts else None
            summary["detector_ms"] = round(sum(w["detector_ms"] for w in rows))
            report["lone"][name] = {"summary": summary, "walkers": rows}
        for scene, maker in (
            ("quiet (noise 1.5)", lambda: (noisy(background, 1.5, rng) for _ in range(int(60 * DETECT_FPS)))),
            ("windy (noise 4, flicker 4, sway 3 px)", partial(windy_frames, background, 60, rng, 3, 4, 4)),
            ("stormy (noise 6, flicker 8, sway 12 px)", partial(windy_frames, background, 60, rng, 12, 8, 6)),
            (
                "small leaves (6 x 24 px, swaying 8 px)",
                partial(leaves_frames, background, 60, rng, 24),
            ),
            (
                "large leaves (6 x 64 px, swaying 8 px)",
                partial(leaves_frames, background, 60, rng, 64),
            ),
        ):
            path = Path(folder) / "empty.mp4"
            count = write_clip(path, maker())
            report["cost"][scene] = {}
            for name, far_config in variants.items():
                r = run_pipeline(path, detector, far_config, args.models_dir, passes.get(name))
                boxes_seen = sum(len(v) for v in r["believed"].values())
                report["cost"][scene][name] = {
                    "detected_per_s": round(r["detected"] / count * DETECT_FPS, 2),
                    "detector_ms": round(r["detector_ms"]),
                    "believed_boxes": boxes_seen,
                }
        if args.crowd:
            for scene, scale in (("walking as it is", 1.0), ("walking far view", 0.5)):
                path = Path(folder) / "crowd.mp4"
                write_clip(path, (far_view(f, scale)[0] if scale != 1.0 else f for f in frames))
                truth = scaled if scale != 1.0 else truths
                report["cost"][scene] = {}
                for name, far_config in variants.items():
                    r = run_pipeline(path, detector, far_config, args.models_dir, passes.get(name))
                    result = score(truth, [r["believed"].get(i, []) for i in range(len(truth))])
                    report["cost"][scene][name] = {
                        "recall": round(result["recall"], 3),
                        "recall_by_height": {
                            k: f"{v['found']}/{v['truth']}"
                            for k, v in result["recall_by_height"].items()
                            if v["truth"]
                        },
                        "extra": result.get("extra"),
                        "detected": r["detected"],
                        "detector_ms": round(r["detector_ms"]),
                    }
    print(f"{report['walkers']} walkers, part {args.part}")
    for name, r in report["lone"].items():
        r_out = r if args.json else r["summary"]
        print(name, json.dumps(r_out))
    print(json.dumps(report["cost"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
