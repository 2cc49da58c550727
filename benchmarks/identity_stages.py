"""Identity's CPU per stage and per frame on a clip: OSNet (the default) against the MobileNetV2 fallback,
each with the crop preprocessing camd used before (float arithmetic) and now (a table); and, for
information, OSNet with MoveNet on one LiteRT thread instead of two. `--batching`: only OSNet, a
frame's crops embedded in one batch (camd now) against one call per crop (camd before). `--pose-budget
6,3`: only OSNet, each budget of poses a frame (`POSES_PER_FRAME`) with the default detector and with
the int8 one (a detector as cheap as bf16 is where the CPU has it), and how many tracks end with a body
shape.

    .venv/bin/python benchmarks/identity_stages.py [--source PATH] [--repeats 2] [--batching]
        [--pose-budget 6,3]

Each variant is `camd bench`'s metered pipeline run (camd/bench.py stage_shares: the gated pipeline at
5 detections a second, every stage's process CPU time, stages serialised); the variants run in turn,
`--repeats` times, in this one process, so their ratios hold on a shared machine. Prints each stage's
share of the process's CPU and identity's CPU ms per processed frame (the median over the repeats).
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial
from pathlib import Path
from typing import Any

# this folder is on sys.path when run as a script
from identity_runtimes import arithmetic_preprocess, data_dir

import camd.identity.camera as camera_module
import camd.identity.track as track_module
from camd.bench import stage_shares
from camd.config import CameraConfig, Config, DetectorConfig, MqttConfig
from camd.config.schema import IdentityConfig
from camd.identity.body_model import resolve_body_model
from camd.identity.evidence.crop_model import OnnxCropModel
from camd.identity.evidence.pose import MoveNetPose
from camd.identity.extractors import Extractors
from camd.identity.model_files import model_file
from camd.identity.service import IdentityService
from camd.identity.track import TrackEvidence
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
    parser.add_argument("--pose-budget", help="comma-separated poses-a-frame budgets to compare")
    args = parser.parse_args()
    if args.pose_budget:
        budgets = [int(b) for b in args.pose_budget.split(",")]
        pose_budgets(args.source, config_for(args.source, args.models_dir, "osnet"), budgets, args.repeats)
        return

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


def pose_budgets(source: str, config: Config, budgets: list[int], repeats: int) -> None:
    """Each budget with the default detector and the int8 one, in turn, `repeats` times."""
    extractors = Extractors.load(config, resolve_body_model(config.identity, config.models_path))
    detectors = {"default": config.detector, "int8": DetectorConfig(precision="int8")}
    pools = {name: InferencePool.from_config(d, config.models_path) for name, d in detectors.items()}
    ended: list[TrackEvidence | None] = []
    conclude = IdentityService.conclude

    def counting_conclude(self: IdentityService, evidence: Any, track: Any, now: float) -> Any:
        ended.append(evidence)
        return conclude(self, evidence, track, now)

    IdentityService.conclude = counting_conclude  # type: ignore[method-assign]
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        for _ in range(repeats):
            for detector, pool in pools.items():
                for budget in budgets:
                    camera_module.pose_turns = partial(track_module.pose_turns, budget=budget)  # type: ignore[attr-defined]
                    ended.clear()
                    run = stage_shares(source, config, pool, extractors)
                    people = [e for e in ended if e is not None and e.kind == "person"]
                    run["poses"] = sum(len(e.poses) for e in people)
                    run["people"] = len(people)
                    run["with_shape"] = sum(e.vectors().shape is not None for e in people)
                    name = f"{detector}, {budget} poses a frame"
                    results.setdefault(name, []).append(run)
                    shapes = f"{run['with_shape']} of {run['people']} people tracks end with a shape"
                    print(f"{name}: {run['frames']} frames, CPU s {run['cpu_s']}, {shapes}", flush=True)
    finally:
        camera_module.pose_turns = track_module.pose_turns  # type: ignore[attr-defined]
        IdentityService.conclude = conclude  # type: ignore[method-assign]
        for pool in pools.values():
            pool.stop()
    report(results)
    print(f"\n{'variant':<30}{'poses':>8}{'tracks with a shape':>22}{'identity / detector CPU':>26}")
    for name, runs in results.items():
        ratio = statistics.median(
            sum(v for k, v in r["cpu_s"].items() if k.startswith("identity_")) / r["cpu_s"]["detector"]
            for r in runs
        )
        shapes = f"{statistics.median(r['with_shape'] for r in runs):.0f} of {runs[0]['people']}"
        print(f"{name:<30}{statistics.median(r['poses'] for r in runs):>8.0f}{shapes:>22}{ratio:>26.2f}")


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
