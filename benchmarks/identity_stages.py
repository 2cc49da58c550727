"""Identity's CPU per stage and per frame on a clip: OSNet (the default) against the MobileNetV2 fallback,
each with the crop preprocessing camd used before (float arithmetic) and now (a table); and, for
information, OSNet with MoveNet on one LiteRT thread instead of two. `--batching`: only OSNet, a
frame's crops embedded in one batch (camd now) against one call per crop (camd before).

    .venv/bin/python benchmarks/identity_stages.py [--source PATH] [--repeats 2] [--batching]

Each variant is `camd bench`'s metered pipeline run (camd/bench.py stage_shares: the gated pipeline at
5 detections a second, every stage's process CPU time, stages serialised); the variants run in turn,
`--repeats` times, in this one process, so their ratios hold on a shared machine. Prints each stage's
share of the process's CPU and identity's CPU ms per processed frame (the median over the repeats).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

# this folder is on sys.path when run as a script
from identity_runtimes import arithmetic_preprocess, data_dir

from camd.bench import stage_shares
from camd.config import CameraConfig, Config, DetectorConfig, MqttConfig
from camd.config.schema import IdentityConfig
from camd.identity.body_model import resolve_body_model
from camd.identity.evidence.crop_model import OnnxCropModel
from camd.identity.evidence.pose import MoveNetPose
from camd.identity.extractors import Extractors
from camd.identity.model_files import model_file
from camd.identity.service import IdentityService
from camd.vision.pool import InferencePool


def config_for(source: str, models_dir: Path, body_model: str) -> Config:
    return Config(
        models_dir=models_dir,
        detector=DetectorConfig(),
        mqtt=MqttConfig(enabled=False),
        cameras={"bench": CameraConfig(url=source, detect_fps=5.0)},
        identity=IdentityConfig(body_model=body_model),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=str(data_dir() / "video" / "supervision_walking.mp4"))
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batching", action="store_true",
                        help="only OSNet: a frame's crops in one batch (now) vs one call each")  # fmt: skip
    args = parser.parse_args()

    table = OnnxCropModel.preprocess
    configs = {kind: config_for(args.source, args.models_dir, kind) for kind in ("osnet", "mobilenetv2")}
    pool = InferencePool.from_config(configs["osnet"].detector, configs["osnet"].models_path)
    loaded = {
        kind: Extractors.load(config, resolve_body_model(config.identity, config.models_path))
        for kind, config in configs.items()
    }
    one_thread = MoveNetPose(model_file(args.models_dir, "movenet"), threads=1)
    results: dict[str, list[dict[str, Any]]] = {}
    if args.batching:
        try:
            for _ in range(args.repeats):
                for name, embed in (("osnet, batched", batched), ("osnet, one crop a call", one_by_one)):
                    IdentityService.embed_crops = embed  # type: ignore[method-assign]
                    run = stage_shares(args.source, configs["osnet"], pool, loaded["osnet"])
                    results.setdefault(name, []).append(run)
                    print(f"{name}: {run['frames']} frames, CPU s {run['cpu_s']}", flush=True)
        finally:
            IdentityService.embed_crops = batched  # type: ignore[method-assign]
            pool.stop()
        report(results)
        return
    try:
        for _ in range(args.repeats):
            for kind, config in configs.items():
                for prep, function in (("arithmetic", arithmetic_preprocess), ("table", table)):
                    OnnxCropModel.preprocess = function  # type: ignore[method-assign]
                    run = stage_shares(args.source, config, pool, loaded[kind])
                    results.setdefault(f"{kind}/{prep}", []).append(run)
                    print(f"{kind}/{prep}: {run['frames']} frames, CPU s {run['cpu_s']}", flush=True)
            # For information: MoveNet with one LiteRT thread instead of camd's two.
            two = loaded["osnet"].pose
            loaded["osnet"].pose = one_thread
            try:
                run = stage_shares(args.source, configs["osnet"], pool, loaded["osnet"])
            finally:
                loaded["osnet"].pose = two
            results.setdefault("osnet/table/pose 1 thread", []).append(run)
    finally:
        OnnxCropModel.preprocess = table  # type: ignore[method-assign]
        pool.stop()
    report(results)


batched = IdentityService.embed_crops


def one_by_one(self: IdentityService, kind: str, crops: list[Any]) -> list[Any]:
    """How camd embedded before: each crop its own call."""
    return [batched(self, kind, [crop])[0] for crop in crops]


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    keys = {k for runs in results.values() for r in runs for k in r["share"]}
    stages = ["detector", *sorted(k for k in keys if k.startswith("identity_")), "other"]
    print("\nshare of the process's CPU (median over repeats)")
    names = {"identity_other": "bookkeeping", "other": "rest"}
    print(f"{'variant':<24}" + "".join(f"{names.get(s, s.removeprefix('identity_')):>14}" for s in stages)
          + f"{'identity':>10}{'ident ms/frame':>16}")  # fmt: skip
    for name, runs in results.items():
        shares = {s: statistics.median(r["share"].get(s, 0.0) for r in runs) for s in stages}
        identity = statistics.median(r["identity_share"] for r in runs)
        per_frame = statistics.median(
            1000.0 * sum(v for k, v in r["cpu_s"].items() if k.startswith("identity_")) / r["frames"]
            for r in runs
        )
        cells = "".join(f"{shares[s]:>14.1%}" for s in stages)
        print(f"{name:<24}{cells}{identity:>10.1%}{per_frame:>16.1f}")


if __name__ == "__main__":
    main()
