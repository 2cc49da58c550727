"""Does batching frames into one detector call pay on this CPU? ms per frame at batch 1, 2, 4, 8.

    PYTHONPATH=. .venv/bin/python benchmarks/batching.py [--clip PATH] [--backend ssd] [--threads 2]

Real frames of the clip (sampled at 5 frames/s), the real detector; each batch size runs over the
same frames, alternating sizes round by round so that a change in machine load hits all sizes alike.
A YOLO export with a fixed batch of 1 runs a batch as one call per frame (no gain by design); export
with `dynamic=True` to batch it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from camd.bench import sampled_frames
from camd.config import DetectorConfig
from camd.demo import default_footage
from camd.vision.detector import create_detector, detect_batch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip", type=Path, default=None)
    parser.add_argument("--backend", choices=["ssd", "yolo"], default="ssd")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    args = parser.parse_args()

    clip = args.clip or default_footage(args.models_dir)
    images = [f.image for f in sampled_frames(str(clip), 5.0, args.frames)]
    detector = create_detector(DetectorConfig(backend=args.backend, threads=args.threads), args.models_dir)
    detector.detect(images[0])  # warm-up
    sizes = (1, 2, 4, 8)
    per_frame: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(args.rounds):
        for size in sizes:
            started = time.perf_counter()
            for start in range(0, len(images), size):
                detect_batch(detector, images[start:start + size])
            per_frame[size].append((time.perf_counter() - started) * 1000.0 / len(images))
    base = statistics.median(per_frame[1])
    print(f"{args.backend}, threads {args.threads}, {len(images)} frames of {clip} ({images[0].shape[1]}x"
          f"{images[0].shape[0]}), median of {args.rounds} rounds:")
    for size in sizes:
        ms = statistics.median(per_frame[size])
        print(f"  batch {size}: {ms:.1f} ms per frame ({base / ms:.2f}x batch 1)")


if __name__ == "__main__":
    main()
