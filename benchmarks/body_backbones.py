"""Body embedder cost: OSNet (ONNX, exported from a random-init checkpoint) vs the built-in MobileNetV2 ONNX.

    .venv/bin/python benchmarks/body_backbones.py [--models-dir var/models] [--variant V] [--rounds 30]

Runs each embedder on real person crops (the people SSD finds in bus.jpg) at batch 1 and batch 5 and prints
the median milliseconds per crop (2 onnxruntime threads, as camd runs them). The OSNet weights are random:
speed does not depend on the values, accuracy does, so no accuracy is reported for them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from camd.assets import ensure_asset
from camd.config.schema import DetectorConfig
from camd.identity.evidence._crops import crop_box
from camd.identity.evidence.body import BodyAppearanceEmbedder
from camd.identity.evidence.osnet import OSNetEmbedder
from camd.identity.model_files import model_file
from camd.modelprep.osnet_convert import export_osnet_onnx
from camd.modelprep.osnet_network import build_osnet
from camd.vision.detector import create_detector


def person_crops(models_dir: Path) -> list[np.ndarray]:
    image = cv2.imread(str(ensure_asset("sample_photos", models_dir) / "bus.jpg"), cv2.IMREAD_COLOR)
    found = [d for d in create_detector(DetectorConfig(), models_dir).detect(image) if d.label == "person"]
    return [np.ascontiguousarray(crop_box(image, d.box)) for d in found]


def ms_per_crop(embed, crops: list[np.ndarray], batch: int, rounds: int) -> float:
    chosen = [crops[i % len(crops)] for i in range(batch)]
    embed(chosen)  # warm-up: first run allocates
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        embed(chosen)
        times.append((time.perf_counter() - started) * 1000.0 / batch)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--variant", default="osnet_x1_0")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    crops = person_crops(args.models_dir)
    mobilenet = BodyAppearanceEmbedder(model_file(args.models_dir, "appearance_onnx"))
    with tempfile.TemporaryDirectory() as work:
        weights = Path(work) / "weights.pth"
        torch.manual_seed(0)
        torch.save(build_osnet(args.variant).state_dict(), weights)
        export_osnet_onnx(weights, Path(work) / "osnet.onnx", args.variant)
        osnet = OSNetEmbedder(Path(work) / "osnet.onnx")
        print(f"{len(crops)} person crops from bus.jpg; median of {args.rounds} rounds, 2 threads")
        print(f"{'embedder':<34} {'dim':>5} {'batch 1 ms/crop':>16} {'batch 5 ms/crop':>16}")
        for name, embedder in (("MobileNetV2 features.14 rows", mobilenet), (f"OSNet {args.variant}", osnet)):
            one = ms_per_crop(embedder.embed, crops, 1, args.rounds)
            five = ms_per_crop(embedder.embed, crops, 5, args.rounds)
            print(f"{name:<34} {embedder.dim:>5} {one:>16.1f} {five:>16.1f}")


if __name__ == "__main__":
    main()
