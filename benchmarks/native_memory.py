"""Which native component grows RSS? Each one alone, in a loop on real frames and person crops.

    PYTHONPATH=. .venv/bin/python benchmarks/native_memory.py --component body --seconds 90 \
        --clip ../shared/data/video/vtest.avi --models-dir var/models [--json]
    ... --component body --compare "default|ort=mem_pattern:0|env=MALLOC_ARENA_MAX:1+no-tune"

Inputs: frames of the clip decoded with PyAV (every 10th frame across the whole clip), person boxes
from the project's detector, crops of those boxes. Each component is the product's own class, loaded as
the daemon loads it, and called with realistic varying shapes:

  detector  the SSD on a frame (the daemon's batch of 1)
  body      the MobileNetV2 body embedder on batches of person crops, sizes drawn from --batches
            (the daemon embeds one crop at a time; enrollment and the evaluations batch up to 16)
  vehicle   the vehicle embedder (the same ONNX backbone plus a colour histogram) on the same crops
  pose      MoveNet (LiteRT) on a frame and one person box
  face      dlib: face_in_person on a person region upscaled so its head is 40..300 px (the HOG detector
            on varying sizes), then the face ResNet on a head crop of varying size
  decode    the whole clip decoded to BGR with PyAV, reopened on every loop (what a looping camera does)
  identity  the daemon's per-box identity calls through IdentityService: pose, embedding, face
  memory    one stranger a call in the embedded store and the sighting log (record, sighting and its
            look, as the daemon learns a stranger; vectors of real crops), pruned every 50 with the
            soak's cap of 500 (Qdrant reopened after 2,000 deletions, as the daemon's prune does)

The process sets the allocator up as the daemon does (camd/malloc.py) and trims every minute, unless
--no-tune. RSS (VmRSS) is sampled after a warm-up and then every --sample-every seconds; the slope is a
least-squares fit over the samples after the warm-up, in MB per 1000 calls and in MB per hour at the
call rate of the 4-camera soak (SOAK_CALLS_PER_HOUR, measured: docs/performance.md).

--threads N calls the component from N threads at once (one shared instance under a lock, as the
daemon's camera threads share the identity models; decode: one container per thread), so glibc gives
each caller its own arena as in the daemon. --compare runs each variant (separated by '|', its parts
by '+') in its own child process on the same component and prints them side by side: "default",
"ort=KEY:VALUE,..." (mem_pattern, arena: 0/1 on the session options; extend: same|pow2 for a
shared CPU arena), "pad=16" (body/vehicle batches padded to 16 crops), "env=NAME:VALUE,..."
(e.g. MALLOC_ARENA_MAX:1), "no-tune".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from camd.bench import least_squares_slope, rss_mb
from camd.config import CameraConfig, Config, DetectorConfig
from camd.config.schema import IdentityConfig
from camd.identity.evidence._crops import crop_box
from camd.malloc import give_back, heap_stats, tune_allocator
from camd.types import Box

COMPONENTS = ("detector", "body", "vehicle", "pose", "face", "decode", "identity", "memory")
# Calls an hour in the 4-camera soak on vtest (benchmarks/soak.py's counts over 2.5 minutes), to turn a
# slope into MB/hour: detector frames; body embeddings (one crop a call in the daemon: use --batches 1);
# poses; face tries (vtest's people are too small for most); loops of the 80 s clip by 4 cameras; the
# identity path (one call: pose + embedding + face try of a box) at the embedding rate.
SOAK_CALLS_PER_HOUR = {"detector": 26_000, "body": 53_000, "pose": 41_000, "face": 50, "decode": 180,
                       "identity": 53_000, "memory": 8_700}
FRAME_STEP = 10  # every 10th frame of the clip (1 a second on vtest)


def decode_frames(clip: Path, step: int = FRAME_STEP) -> list[np.ndarray]:
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="bgr24") for i, f in enumerate(container.decode(stream)) if i % step == 0]


def person_boxes(detector: Any, frames: list[np.ndarray]) -> list[tuple[int, Box]]:
    """(frame index, box) of every person the detector finds at the daemon's default min_score."""
    found = []
    for i, frame in enumerate(frames):
        for det in detector.detect(frame):
            if det.label == "person" and det.score >= 0.5 and det.box[3] - det.box[1] >= 16:
                found.append((i, det.box))
    return found


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """A contiguous copy of the box's pixels, as the daemon hands crops to the models."""
    return np.ascontiguousarray(crop_box(image, box))


def apply_ort_options(overrides: dict[str, str]) -> None:
    """Patch onnxruntime.InferenceSession so every session the product builds gets these options."""
    import onnxruntime as ort

    original = ort.InferenceSession
    if "extend" in overrides:  # one arena shared by all sessions, with the given extend strategy
        strategy = {"pow2": 0, "same": 1}[overrides["extend"]]
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, strategy, -1, -1))

    def session(path: str, sess_options: Any = None, **kwargs: Any) -> Any:
        options = sess_options or ort.SessionOptions()
        if "mem_pattern" in overrides:
            options.enable_mem_pattern = overrides["mem_pattern"] == "1"
        if "arena" in overrides:
            options.enable_cpu_mem_arena = overrides["arena"] == "1"
        if "extend" in overrides:
            options.add_session_config_entry("session.use_env_allocators", "1")
        return original(path, sess_options=options, **kwargs)

    ort.InferenceSession = session  # type: ignore[misc,assignment]


def build(component: str, args: argparse.Namespace, frames: list[np.ndarray],
          boxes: list[tuple[int, Box]], rng: random.Random) -> Callable[[], object]:
    """A function making one realistic call of `component` (its inputs drawn from rng)."""
    from camd.identity.model_files import IdentityModelPaths

    paths = IdentityModelPaths.prepare(args.models_dir)
    crops = [crop(frames[i], box) for i, box in boxes]
    sizes = [int(s) for s in args.batches.split("-")]
    low, high = sizes[0], sizes[-1]
    pad = args.pad

    def batch_of_crops() -> list[np.ndarray]:
        chosen = [rng.choice(crops) for _ in range(rng.randint(low, high))]
        return chosen + [chosen[0]] * (pad - len(chosen)) if pad > len(chosen) else chosen

    if component == "detector":
        from camd.vision.detector import create_detector

        detector = create_detector(DetectorConfig(), args.models_dir)
        return lambda: detector.detect(rng.choice(frames))
    if component == "body":
        from camd.identity.evidence.body import load_body_embedder

        body = load_body_embedder(IdentityConfig(), args.models_dir)
        return lambda: body.embed(batch_of_crops())
    if component == "vehicle":
        from camd.identity.evidence.vehicle import VehicleAppearanceEmbedder

        vehicle = VehicleAppearanceEmbedder(paths.appearance_onnx)
        return lambda: vehicle.embed(batch_of_crops())
    if component == "pose":
        from camd.identity.evidence.pose import MoveNetPose

        pose = MoveNetPose(paths.movenet)

        def one_pose() -> object:
            i, box = rng.choice(boxes)
            return pose.keypoints(frames[i], [box])

        return one_pose
    if component == "face":
        from camd.identity.evidence.face import FaceEmbedder

        face = FaceEmbedder(paths.face_shape, paths.face_resnet)

        def one_face() -> object:
            i, box = rng.choice(boxes)
            region = crop(frames[i], (box[0] - 20, box[1] - 20, box[2] + 20, box[3] + 20))
            # upscale so the head (30% of the person's height) is 40..300 px
            scale = rng.uniform(40, 300) / max(1.0, 0.3 * (box[3] - box[1]))
            big = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            height, width = big.shape[:2]
            found = face.face_in_person(big, (0.0, 0.0, float(width), float(height)))
            head = big[: max(8, int(0.3 * height)), :]
            return found, face.embed([np.ascontiguousarray(head)])

        return one_face
    if component == "decode":
        def one_loop() -> object:
            with av.open(str(args.clip)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"  # as camd/sources/stream.py does for files
                return sum(f.to_ndarray(format="bgr24").shape[0] > 0 for f in container.decode(stream))

        return one_loop
    if component == "identity":
        from camd.identity.service import IdentityService

        state = Path(tempfile.mkdtemp(prefix="camd-native-"))
        config = Config(state_dir=state, models_dir=args.models_dir,
                        cameras={"probe": CameraConfig(url=str(args.clip))})
        service = IdentityService(config)

        def one_box() -> object:
            i, box = rng.choice(boxes)
            frame = frames[i]
            return (service.pose(frame, box), service.embed_crop("person", crop(frame, box)),
                    service.face_in_person(frame, box))

        return one_box
    if component == "memory":
        from camd.identity.evidence.body import load_body_embedder
        from camd.identity.evidence.colour import ClothingColourDescriptor
        from camd.identity.memory import Memory

        config = Config(state_dir=Path(tempfile.mkdtemp(prefix="camd-native-")), models_dir=args.models_dir,
                        cameras={"probe": CameraConfig(url=str(args.clip))})
        memory = Memory(config)
        chosen = [rng.choice(crops) for _ in range(64)]
        looks = [{"body": b, "colour": c} for b, c in zip(
            load_body_embedder(IdentityConfig(), args.models_dir).embed(chosen),
            ClothingColourDescriptor().embed(chosen), strict=True)]
        made = 0

        def one_stranger() -> object:
            nonlocal made
            made += 1
            now, pid, look = time.time(), memory.next_unknown_id("person"), rng.choice(looks)
            memory.save_person({"person_id": pid, "name": pid, "role": "stranger", "kind": "person",
                                "created": now, "last_seen": now, "last_camera": "probe", "seen_count": 1,
                                "expires_at": now + 86400.0})
            memory.add_sighting(f"s{made}", look, {"camera": "probe", "label": "person", "person_id": pid,
                                                   "start_time": now, "end_time": now,
                                                   "expires_at": now + 86400.0})
            memory.add_stranger_look(pid, f"s{made}", camera="probe", face_until=None,
                                     look_until=now + 3600.0, learned_at=now)
            return memory.prune(now, max_strangers=500) if made % 50 == 0 else None

        return one_stranger
    raise ValueError(f"unknown component {component!r}")


def run(component: str, args: argparse.Namespace) -> dict[str, Any]:
    if args.ort:
        apply_ort_options(dict(kv.split(":", 1) for kv in args.ort.split(",")))
    if args.tune:
        tune_allocator()
    rng = random.Random(7)
    frames = decode_frames(args.clip)
    from camd.vision.detector import create_detector

    boxes = person_boxes(create_detector(DetectorConfig(), args.models_dir), frames)
    call = build(component, args, frames, boxes, rng)
    lock = threading.Lock()
    calls = 0
    durations: list[float] = []

    def one() -> None:
        nonlocal calls
        with lock:
            started = time.perf_counter()
            call()
            durations.append(time.perf_counter() - started)
            calls += 1

    for _ in range(args.warmup):
        one()
    warm_rss, warm_heap = rss_mb(), heap_stats()
    stop = threading.Event()
    budget = args.calls

    def worker() -> None:
        while not stop.is_set() and (budget is None or calls < budget):
            one()
        stop.set()

    durations.clear()
    started = last_trim = time.monotonic()
    base_calls = calls
    samples: list[tuple[float, float]] = [(0.0, warm_rss)]
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    while not stop.wait(args.sample_every):
        now = time.monotonic()
        if args.seconds is not None and now - started >= args.seconds:
            stop.set()
        if args.tune and now - last_trim >= 60.0:  # the daemon's minute trims
            give_back()
            last_trim = now
        samples.append((float(calls - base_calls), rss_mb()))
    for t in threads:
        t.join()
    samples.append((float(calls - base_calls), rss_mb()))
    per_1000 = least_squares_slope(samples) * 1000.0
    done = calls - base_calls
    elapsed = time.monotonic() - started
    result: dict[str, Any] = {
        "component": component, "variant": args.variant, "threads": args.threads,
        "boxes": len(boxes), "calls": done, "seconds": round(elapsed, 1),
        "ms_per_call_p50": round(statistics.median(durations) * 1000, 2) if durations else None,
        "ms_per_call_mean": round(statistics.fmean(durations) * 1000, 2) if durations else None,
        "rss_warm_mb": round(warm_rss, 1), "rss_end_mb": round(samples[-1][1], 1),
        "rss_max_mb": round(max(v for _, v in samples), 1),
        **{f"heap_{k}_warm_mb": round(v, 1) for k, v in warm_heap.items()},
        **{f"heap_{k}_end_mb": round(v, 1) for k, v in heap_stats().items()},
        "slope_mb_per_1000_calls": round(per_1000, 3),
        "samples": len(samples),
    }
    if component in SOAK_CALLS_PER_HOUR:
        result["slope_mb_per_soak_hour"] = round(per_1000 * SOAK_CALLS_PER_HOUR[component] / 1000, 1)
    return result


def cost(args: argparse.Namespace) -> dict[str, Any]:
    """ms per body embedding, the product's sessions against sessions with --ort, calls alternating
    (same process, same batches, so machine load hits both alike)."""
    from camd.identity.evidence.body import load_body_embedder

    rng = random.Random(7)
    frames = decode_frames(args.clip)
    from camd.vision.detector import create_detector

    boxes = person_boxes(create_detector(DetectorConfig(), args.models_dir), frames)
    crops = [crop(frames[i], box) for i, box in boxes]
    product = load_body_embedder(IdentityConfig(), args.models_dir)
    apply_ort_options(dict(kv.split(":", 1) for kv in args.ort.split(",")))
    patched = load_body_embedder(IdentityConfig(), args.models_dir)
    sizes = [int(s) for s in args.batches.split("-")]
    times: dict[str, list[float]] = {"product": [], args.ort: []}
    deadline = time.monotonic() + (args.seconds or 30.0)
    while time.monotonic() < deadline:
        batch = [rng.choice(crops) for _ in range(rng.randint(sizes[0], sizes[-1]))]
        for name, model in (("product", product), (args.ort, patched)):
            started = time.perf_counter()
            model.embed(batch)
            times[name].append((time.perf_counter() - started) * 1000)
    return {"batches": args.batches, "calls_each": len(times["product"]),
            **{f"{name}_ms_mean": round(statistics.fmean(t[5:]), 2) for name, t in times.items()},
            **{f"{name}_ms_p50": round(statistics.median(t[5:]), 2) for name, t in times.items()}}


def compare(component: str, args: argparse.Namespace, variants: list[str]) -> list[dict[str, Any]]:
    """Each variant in a child process (RSS is per process), one after another on the same inputs."""
    results = []
    for variant in variants:
        env = dict(os.environ)
        command = [sys.executable, __file__, "--component", component, "--json", "--variant", variant,
                   "--clip", str(args.clip), "--models-dir", str(args.models_dir),
                   "--threads", str(args.threads), "--batches", args.batches, "--warmup", str(args.warmup),
                   "--sample-every", str(args.sample_every)]
        command += ["--seconds", str(args.seconds)] if args.seconds is not None else []
        command += ["--calls", str(args.calls)] if args.calls is not None else []
        for part in variant.split("+"):
            kind, _, value = part.partition("=")
            if kind == "ort":
                command += ["--ort", value]
            elif kind == "pad":
                command += ["--pad", value]
            elif kind == "env":
                env.update(dict(kv.split(":", 1) for kv in value.split(",")))
            elif kind == "no-tune":
                command += ["--no-tune"]
            elif kind != "default":
                raise SystemExit(f"unknown variant {part!r}")
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--component", choices=[*COMPONENTS, "all"], default="all")
    parser.add_argument("--clip", type=Path, default=Path("../shared/data/video/vtest.avi"))
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--seconds", type=float, default=None, help="run each component this long")
    parser.add_argument("--calls", type=int, default=None, help="or this many calls (default: 60 s)")
    parser.add_argument("--warmup", type=int, default=50, help="calls before the first RSS sample")
    parser.add_argument("--sample-every", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--threads", type=int, default=1, help="callers at once (one shared instance)")
    parser.add_argument("--batches", default="1-16", help="body/vehicle batch sizes: LOW-HIGH or N")
    parser.add_argument("--pad", type=int, default=0, help="pad body/vehicle batches to this many crops")
    parser.add_argument("--ort", default="", help="onnxruntime options, e.g. mem_pattern:0,arena:0")
    parser.add_argument("--no-tune", dest="tune", action="store_false",
                        help="leave glibc's allocator as it starts (no mallopt, no minute trims)")
    parser.add_argument("--cost", action="store_true",
                        help="body only: ms per call of the product's sessions against --ort, alternating")
    parser.add_argument("--compare", default="", help="variants separated by '|' (see above)")
    parser.add_argument("--variant", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    args = parser.parse_args()
    if args.seconds is None and args.calls is None:
        args.seconds = 60.0
    if args.cost:
        print(json.dumps(cost(args)), flush=True)
        return
    components = COMPONENTS if args.component == "all" else (args.component,)
    for component in components:
        if args.compare:
            results = compare(component, args, args.compare.split("|"))
        else:
            results = [run(component, args)]
        for r in results:
            if args.json:
                print(json.dumps(r), flush=True)
            else:
                print(f"{r['component']:9} {r['variant']:40} calls {r['calls']:6}  "
                      f"{r['ms_per_call_mean']:7.2f} ms/call  "
                      f"RSS {r['rss_warm_mb']:6.1f} -> {r['rss_end_mb']:6.1f} MB  "
                      f"slope {r['slope_mb_per_1000_calls']:+8.3f} MB/1000 calls"
                      + (f"  {r['slope_mb_per_soak_hour']:+.1f} MB/soak-hour" if "slope_mb_per_soak_hour" in r
                         else ""), flush=True)


if __name__ == "__main__":
    main()
