"""The motion gate's trade-off on a real clip: detector calls saved against track recall.

    PYTHONPATH=. .venv/bin/python benchmarks/gate_tradeoff.py [--clip PATH] [--moving 0 0.4 0.6 1.0]

Runs the real pipeline (decode, gate, tracker, events; no identity) once with the gate off (the
reference) and once per `motion.moving_refresh_s` value, with and without `motion.follow` (boxes
moved by optical flow between detections). The detector is the real SSD, but each
distinct frame is detected once and its answer reused by the other runs (the frames are identical
run to run), so the figures are exact and machine-independent: the fraction of frames the
detector ran on and the track recall as `camd bench` defines it. Wall-clock speed-ups come from
`camd bench` (which measures one setting); here the expected speed-up is
1 / (fraction + other_ms / detector_ms), with other_ms and detector_ms measured in this run.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from camd.bench import RECALL_MIN_TRACK_S, track_recall
from camd.config import CameraConfig, Config, DetectorConfig, MotionConfig, MqttConfig
from camd.demo import default_footage
from camd.pipeline import CameraPipeline
from camd.types import Detection
from camd.vision.detector import Detector, create_detector


class RememberingDetector:
    """The real detector, asked once per distinct frame."""

    name = "remembering"

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.answers: dict[str, list[Detection]] = {}
        self.calls = 0
        self.ms: list[float] = []

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.calls += 1
        key = hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()
        if key not in self.answers:
            started = time.perf_counter()
            self.answers[key] = self.inner.detect(image)
            self.ms.append((time.perf_counter() - started) * 1000.0)
        return self.answers[key]


def run(clip: str, motion: MotionConfig, detector: RememberingDetector, models_dir: Path) -> dict:
    config = Config(models_dir=models_dir, mqtt=MqttConfig(enabled=False),
                    cameras={"bench": CameraConfig(url=clip, detect_fps=5.0, motion=motion)})
    calls_before = detector.calls
    pipeline = CameraPipeline("bench", config, detector, lambda _event: None, threading.Event())
    trace: dict[int, list] = {}
    pipeline.on_frame = lambda frame, _detected, boxes: trace.__setitem__(frame.index, boxes)
    started = time.perf_counter()
    pipeline.run()
    return {"trace": trace, "frames": pipeline.stats.frames, "calls": detector.calls - calls_before,
            "seconds": time.perf_counter() - started, "tracks": pipeline.track_events.tracks_announced,
            "reasons": dict(pipeline.gate.reasons)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip", type=Path, default=None)
    parser.add_argument("--moving", type=float, nargs="+", default=[0.0, 0.4, 0.6, 1.0],
                        help="motion.moving_refresh_s values to try")
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    args = parser.parse_args()

    clip = str(args.clip or default_footage(args.models_dir))
    detector = RememberingDetector(create_detector(DetectorConfig(), args.models_dir))
    naive = run(clip, MotionConfig(enabled=False), detector, args.models_dir)
    detector_ms = statistics.median(detector.ms)
    print(f"{clip}: {naive['frames']} frames at 5 fps, {naive['tracks']} tracks with the gate off; "
          f"detector p50 {detector_ms:.1f} ms")
    min_frames = max(2, round(RECALL_MIN_TRACK_S * 5.0))
    for moving, follow in [(moving, follow) for moving in args.moving for follow in (False, True)]:
        gated = run(clip, MotionConfig(moving_refresh_s=moving, follow=follow), detector, args.models_dir)
        fraction = gated["calls"] / max(1, gated["frames"])
        other_ms = gated["seconds"] * 1000.0 / max(1, gated["frames"])  # all detections were remembered
        recall, counted = track_recall(naive["trace"], gated["trace"], min_frames)
        expected = (detector_ms + other_ms) / (fraction * detector_ms + other_ms)
        shown = "n/a" if recall is None else f"{recall:.3f}"
        print(f"  moving_refresh_s {moving:>4}, follow {'on ' if follow else 'off'}: "
              f"detector on {fraction:5.1%} of frames, recall {shown} of "
              f"{counted} tracks, {gated['tracks']} tracks, expected speed-up {expected:.2f}x "
              f"(other work {other_ms:.1f} ms/frame); detector ran for: {gated['reasons']}")


if __name__ == "__main__":
    main()
