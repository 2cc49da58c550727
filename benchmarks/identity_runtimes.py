"""Identity's per-crop cost, old and candidate runtimes side by side on real crops (camd issues 13 and 16).

    .venv/bin/python benchmarks/identity_runtimes.py [--models-dir var/models] [--rounds 15]

Crops: the people the default detector finds in frames of supervision_walking, and reid/train's crops
(../shared/data, or CAMD_TEST_DATA). Every comparison alternates its variants in this one run, so the
ratios hold on a shared machine even when the absolute milliseconds do not. Prints:

1. the crop preprocessing: the float arithmetic camd used before, against the table it uses now
   (bit-identical, and its CPU per colour + grey pair);
2. OSNet through onnxruntime (camd's runtime) against OpenVINO f32 (and bf16, for information), per
   batch of 1..16 crops, each embedded twice (colour and grey, as camd does): CPU and wall ms per crop,
   and the worst cosine against onnxruntime;
3. MoveNet through LiteRT (camd's runtime) against OpenVINO f32 reading the same .tflite, at 1 and 2
   threads: CPU ms per person and the worst keypoint difference over the box side; `--pose-int8` (alone):
   MoveNet quantized to int8 by NNCF, calibrated on half the people and judged on the other half;
4. camd's own runtimes at 1 thread against the 2 camd gives them, one crop at a time as the daemon
   embeds: CPU and wall ms (on a loaded machine the second thread mostly waits for a core).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camd.config.schema import DetectorConfig, IdentityConfig
from camd.identity.evidence._crops import crop_box, l2_normalise
from camd.identity.evidence.crop_model import OnnxCropModel
from camd.identity.evidence.osnet import OSNetEmbedder, greyscale
from camd.identity.evidence.pose import CONFIDENT, MoveNetPose
from camd.identity.model_files import model_file
from camd.modelprep.osnet import cached_onnx
from camd.vision.detector import create_detector
from camd.vision.openvino_setup import decline_telemetry
from camd.vision.ssd_openvino import compile_cpu, openvino_core

_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def arithmetic_preprocess(model: OnnxCropModel, crops: list[np.ndarray]) -> np.ndarray:
    """What OnnxCropModel.preprocess computed before the table (commit 0fbd510)."""
    height, width = model.input_hw
    batch = np.empty((len(crops), 3, height, width), dtype=np.float32)
    for i, crop in enumerate(crops):
        small = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        batch[i] = ((rgb.astype(np.float32) / 255.0 - _MEAN) / _STD).transpose(2, 0, 1)
    return batch


def data_dir() -> Path:
    return Path(os.environ.get("CAMD_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def walking_people(models_dir: Path, frames: int = 12, every: int = 25) -> list[tuple[np.ndarray, tuple]]:
    detector = create_detector(DetectorConfig(), models_dir)
    capture = cv2.VideoCapture(str(data_dir() / "video" / "supervision_walking.mp4"))
    people, index = [], 0
    while index < frames * every:
        ok, frame = capture.read()
        if not ok:
            break
        if index % every == 0:
            people += [(frame, tuple(d.box)) for d in detector.detect(frame) if d.label == "person"]
        index += 1
    return people


def alternate(variants: dict[str, Callable[[], object]], rounds: int) -> tuple[dict, dict]:
    """Median CPU and wall ms of each variant, run in turn `rounds` times."""
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            started, process = time.perf_counter(), time.process_time()
            run()
            wall[name].append((time.perf_counter() - started) * 1000.0)
            cpu[name].append((time.process_time() - process) * 1000.0)
    median = statistics.median
    return {k: median(v) for k, v in cpu.items()}, {k: median(v) for k, v in wall.items()}


def openvino_runner(model: Path | Any, threads: int, hint: str) -> Callable[[np.ndarray], np.ndarray]:
    """`model`: a file OpenVINO reads, or a model already read (a quantized one)."""
    core = openvino_core()
    read = core.read_model(str(model)) if isinstance(model, Path) else model
    request = compile_cpu(core, read, threads, hint).create_infer_request()
    return lambda batch: np.asarray(request.infer({0: batch})[0]).copy()


def quantized_movenet(path: Path, calibration: list[tuple[np.ndarray, tuple]]) -> Any:
    """MoveNet's .tflite quantized to int8 by NNCF, calibrated on these people's crops as camd makes them."""
    decline_telemetry()
    import nncf

    pose = MoveNetPose(path, threads=1)
    squares = [cv2.cvtColor(pose._square(f, b)[0], cv2.COLOR_BGR2RGB)[None] for f, b in calibration]
    model = openvino_core().read_model(str(path))
    return nncf.quantize(model, nncf.Dataset(squares), subset_size=len(squares))


def openvino_pose(path: Path, threads: int, model: Any = None) -> MoveNetPose:
    """camd's MoveNetPose with its LiteRT interpreter swapped for OpenVINO f32 on the same .tflite (or on
    `model`, e.g. a quantized one)."""
    pose = MoveNetPose(path, threads=threads)
    run = openvino_runner(path if model is None else model, threads, "f32")

    class Interpreter:  # the three calls MoveNetPose.keypoints makes
        def set_tensor(self, _index: int, value: np.ndarray) -> None:
            self.output = run(value)

        def invoke(self) -> None:
            pass

        def get_tensor(self, _index: int) -> np.ndarray:
            return self.output

    pose._interpreter = Interpreter()
    return pose


def preprocessing(model: OnnxCropModel, crops: list[np.ndarray], rounds: int) -> None:
    pairs = [*crops, *(greyscale(c) for c in crops)]
    same = np.array_equal(arithmetic_preprocess(model, pairs), model.preprocess(pairs))
    one = [crops[0], greyscale(crops[0])]
    cpu, _ = alternate(
        {"arithmetic": lambda: arithmetic_preprocess(model, one), "table": lambda: model.preprocess(one)},
        rounds * 20,
    )
    ratio = cpu["table"] / cpu["arithmetic"]
    print(f"1. preprocessing, {len(pairs)} inputs bit-identical: {same}; CPU ms per colour + grey pair: "
          f"arithmetic {cpu['arithmetic']:.3f}, table {cpu['table']:.3f} (x{ratio:.2f})")


def osnet_runtimes(onnx: Path, crops: list[np.ndarray], rounds: int) -> None:
    ort = OnnxCropModel(onnx, "OSNet")
    f32, bf16 = openvino_runner(onnx, 2, "f32"), openvino_runner(onnx, 2, "bf16")
    inputs = ort.preprocess([*crops, *(greyscale(c) for c in crops)])
    chunks = [inputs[i : i + 16] for i in range(0, len(inputs), 16)]
    reference = l2_normalise(np.concatenate([ort._session.run(None, {ort._input: c})[0] for c in chunks]))
    worst = {name: float((reference * l2_normalise(np.concatenate([run(c) for c in chunks]))).sum(1).min())
             for name, run in (("f32", f32), ("bf16", bf16))}  # fmt: skip
    print(f"2. OSNet on {len(inputs)} inputs, worst cosine to onnxruntime: OpenVINO f32 {worst['f32']:.7f}, "
          f"bf16 {worst['bf16']:.5f}")
    print("   crops  CPU ms/crop: onnxruntime  OV f32  OV bf16 | wall ms/crop: onnxruntime  OV f32  OV bf16")
    for n in range(1, 17):
        batch = ort.preprocess([*crops[:n], *(greyscale(c) for c in crops[:n])])
        cpu, wall = alternate(
            {"ort": lambda b=batch: ort._session.run(None, {ort._input: b}),
             "f32": lambda b=batch: f32(b), "bf16": lambda b=batch: bf16(b)}, rounds,
        )  # fmt: skip
        print(f"   {n:5d}  {cpu['ort'] / n:23.2f} {cpu['f32'] / n:7.2f} {cpu['bf16'] / n:8.2f} | "
              f"{wall['ort'] / n:24.2f} {wall['f32'] / n:7.2f} {wall['bf16'] / n:8.2f}", flush=True)


def pose_runtimes(path: Path, people: list[tuple[np.ndarray, tuple]], rounds: int) -> None:
    for threads in (1, 2):
        litert, openvino = MoveNetPose(path, threads=threads), openvino_pose(path, threads)
        worst = max(
            float(np.abs(litert.keypoints(f, [b])[0, :, :2] - openvino.keypoints(f, [b])[0, :, :2]).max())
            / max(b[2] - b[0], b[3] - b[1])
            for f, b in people
        )
        shown = people[:40]
        cpu, _ = alternate(
            {"litert": lambda p=litert, s=shown: [p.keypoints(f, [b]) for f, b in s],
             "openvino": lambda p=openvino, s=shown: [p.keypoints(f, [b]) for f, b in s]},
            max(3, rounds // 3),
        )  # fmt: skip
        n = len(shown)
        print(f"3. MoveNet, {threads} thread(s), {len(people)} people: worst keypoint difference "
              f"{worst:.1e} of the box side; CPU ms/person LiteRT {cpu['litert'] / n:.2f}, OpenVINO f32 "
              f"{cpu['openvino'] / n:.2f} (x{cpu['openvino'] / cpu['litert']:.2f})", flush=True)


def pose_int8(path: Path, people: list[tuple[np.ndarray, tuple]], rounds: int) -> None:
    """MoveNet quantized to int8, calibrated on every other person, judged on the rest, 1 thread."""
    calibration, judged = people[::2], people[1::2]
    litert = MoveNetPose(path, threads=1)
    int8 = openvino_pose(path, 1, quantized_movenet(path, calibration))
    moved, flipped = [], []
    for frame, box in judged:
        ref, got = litert.keypoints(frame, [box])[0], int8.keypoints(frame, [box])[0]
        confident = ref[:, 2] >= CONFIDENT
        side = max(box[2] - box[0], box[3] - box[1])
        moved.append(float(np.abs(ref[confident, :2] - got[confident, :2]).max(initial=0.0)) / side)
        flipped.append(float(np.mean(confident != (got[:, 2] >= CONFIDENT))))
    shown = judged[:40]
    cpu, _ = alternate(
        {"litert": lambda: [litert.keypoints(f, [b]) for f, b in shown],
         "int8": lambda: [int8.keypoints(f, [b]) for f, b in shown]},
        max(3, rounds // 3),
    )  # fmt: skip
    print(f"3b. MoveNet int8 (OpenVINO + NNCF, {len(calibration)} calibration people), {len(judged)} others, "
          f"1 thread: largest confident keypoint move, median {np.median(moved):.3f} / p95 "
          f"{np.percentile(moved, 95):.3f} of the box side; keypoints changing confident/not "
          f"{np.mean(flipped):.1%}; CPU ms/person LiteRT {cpu['litert'] / len(shown):.2f}, int8 "
          f"{cpu['int8'] / len(shown):.2f} (x{cpu['int8'] / cpu['litert']:.2f})", flush=True)


def thread_counts(onnx: Path, movenet: Path, crops: list[np.ndarray], rounds: int) -> None:
    osnet = {t: OSNetEmbedder(onnx, threads=t) for t in (1, 2)}
    pose = {t: MoveNetPose(movenet, threads=t) for t in (1, 2)}
    same = np.array_equal(osnet[1].embed(crops[:8]), osnet[2].embed(crops[:8]))
    variants: dict[str, Callable[[], object]] = {}
    for t in (1, 2):
        variants[f"osnet {t}"] = lambda t=t: [osnet[t].embed([c]) for c in crops[:20]]
        variants[f"pose {t}"] = lambda t=t: pose[t].crop_keypoints(crops[:20])
    cpu, wall = alternate(variants, rounds)
    for what in ("osnet", "pose"):
        one, two = f"{what} 1", f"{what} 2"
        print(f"4. {what}, ms per crop at 1 / 2 threads: CPU {cpu[one] / 20:.2f} / {cpu[two] / 20:.2f} "
              f"(x{cpu[one] / cpu[two]:.2f}), wall {wall[one] / 20:.2f} / {wall[two] / 20:.2f}"
              + (f"; OSNet vectors identical: {same}" if what == "osnet" else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads-only", action="store_true", help="only part 4")
    parser.add_argument("--pose-int8", action="store_true", help="only MoveNet quantized to int8 (3b)")
    args = parser.parse_args()

    people = walking_people(args.models_dir)
    if args.pose_int8:
        pose_int8(model_file(args.models_dir, "movenet"), people, args.rounds)
        return
    reid = sorted((data_dir() / "reid" / "train").glob("*/*.png"))[::9]
    crops = [np.ascontiguousarray(crop_box(f, b)) for f, b in people] + [cv2.imread(str(p)) for p in reid]
    print(f"{len(people)} people in supervision_walking frames, {len(reid)} reid/train crops")
    onnx = cached_onnx(IdentityConfig().osnet, args.models_dir)
    if onnx is None:
        raise SystemExit("OSNet is not prepared: run `camd models prepare`")
    if not args.threads_only:
        preprocessing(OnnxCropModel(onnx, "OSNet"), crops, args.rounds)
        osnet_runtimes(onnx, crops, args.rounds)
        pose_runtimes(model_file(args.models_dir, "movenet"), people, args.rounds)
    thread_counts(onnx, model_file(args.models_dir, "movenet"), crops, args.rounds)


if __name__ == "__main__":
    main()
