"""Every detector runtime/precision side by side on real frames: speed and agreement with the reference.

    .venv/bin/python benchmarks/detector_backends.py --models-dir var/models [--json]

Speed: the whole `detect()` call (resize, inference, decoding, NMS), `--runs` timed calls per
variant on one vtest frame after warm-up, all variants in one process, interleaved round by round so
a neighbour's load hits them alike. Agreement: on every `--step`-th frame of vtest (480x360) and
walking (1280x720) from ../shared/data, the person boxes scored >= 0.5 by the fp32 reference (OpenCV
DNN running the whole TensorFlow graph, as camd did before) against each variant's person boxes >= 0.5
(IoU >= 0.5, greedy): matched (share of the reference's), extra (the variant's unmatched), and the mean
absolute score difference of matched pairs. The photos: every person and the bus of bus.jpg and
zidane.jpg as the reference scores them, with the variant's scores.

The noise floor: the same reference run on a visually lossless re-encode of each clip (libx264 crf 18,
what a camera's own encoder could just as well have sent), measured the same way. A precision that
agrees with the reference about as well as the reference agrees with itself on re-encoded footage
differs from it by less than the footage does.

`--tracks`: the daemon's own pipeline (motion gate, tracker, events; identity off) on each clip at 5
detect frames/s with the f32 default, each variant and the re-encode: the share of the reference's
announced tracks (>= 3 and >= 10 frames) one candidate track follows on at least half their frames.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camd.config.schema import DetectorConfig
from camd.geometry import iou
from camd.types import Detection
from camd.vision.detector import create_detector
from camd.vision.offline import clip_frames, probe

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
VARIANTS: dict[str, DetectorConfig] = {
    "opencv_f32": DetectorConfig(runtime="opencv"),
    "openvino_f32": DetectorConfig(precision="f32"),
    "openvino_bf16": DetectorConfig(precision="bf16"),
    "openvino_int8": DetectorConfig(precision="int8"),
}
CONFIDENT = 0.5
MATCH_IOU = 0.5


def people(detections: list[Detection]) -> list[Detection]:
    return [d for d in detections if d.label == "person" and d.score >= CONFIDENT]


def agreement(reference: list[list[Detection]], candidate: list[list[Detection]]) -> dict[str, float]:
    """matched: the reference's person boxes >= 0.5 the candidate also scores >= 0.5 (the issue's
    measure: a box whose score crosses 0.5 either way counts as lost or extra); boxes_found: those the
    candidate has at all (>= its 0.25 floor, what the tracker sees); score_bias: mean signed difference."""
    matched = extra = total = found = 0
    diffs: list[float] = []
    for ref_frame, cand_frame in zip(reference, candidate, strict=True):
        free = people(cand_frame)
        anywhere = [d for d in cand_frame if d.label == "person"]
        refs = people(ref_frame)
        total += len(refs)
        for ref in sorted(refs, key=lambda d: -d.score):
            near = max(anywhere, key=lambda d: iou(d.box, ref.box), default=None)
            if near is not None and iou(near.box, ref.box) >= MATCH_IOU:
                anywhere.remove(near)
                found += 1
                diffs.append(near.score - ref.score)
            best = max(free, key=lambda d: iou(d.box, ref.box), default=None)
            if best is not None and iou(best.box, ref.box) >= MATCH_IOU:
                free.remove(best)
                matched += 1
        extra += len(free)
    return {
        "reference_boxes": total,
        "matched": matched,
        "matched_share": matched / total if total else 1.0,
        "extra": extra,
        "boxes_found": found,
        "boxes_found_share": found / total if total else 1.0,
        "mean_abs_score_diff": statistics.fmean(abs(d) for d in diffs) if diffs else 0.0,
        "score_bias": statistics.fmean(diffs) if diffs else 0.0,
    }


def reencoded(source: Path, folder: Path) -> Path:
    """A visually lossless copy of `source` (H.264, crf 18), frame for frame as camd decodes it (the
    container's own frame list can hold one more: it would shift every later frame)."""
    import av

    target = folder / f"{source.stem}_crf18.mp4"
    with av.open(str(target), "w") as out:
        stream = None
        for index, frame in enumerate(clip_frames(str(source))):
            if stream is None:
                rate = Fraction(probe(str(source)).fps).limit_denominator(1001)  # the same frame times
                stream = out.add_stream("libx264", rate=rate)
                stream.height, stream.width = frame.image.shape[:2]
                stream.pix_fmt, stream.options = "yuv420p", {"crf": "18", "preset": "fast"}
            copy = av.VideoFrame.from_ndarray(frame.image, format="bgr24").reformat(format="yuv420p")
            copy.pts = index
            out.mux(stream.encode(copy))
        if stream is not None:
            out.mux(stream.encode())
    return target


def track_agreement(files: dict[str, Path], copies: dict[str, Path], models_dir: Path) -> dict[str, Any]:
    """Announced tracks of the pipeline per variant (and on the re-encode) against the f32 default's."""
    from camd.bench import pipeline_run, track_recall
    from camd.config.schema import CameraConfig, Config, MqttConfig
    from camd.vision.pool import InferencePool

    out: dict[str, Any] = {}
    for clip, path in files.items():
        runs = {}
        for name, config, source in [
            *((name, config, path) for name, config in VARIANTS.items()),
            ("openvino_f32_on_reencode", VARIANTS["openvino_f32"], copies[clip]),
        ]:
            setup = Config(
                models_dir=models_dir, detector=config, mqtt=MqttConfig(enabled=False),
                cameras={"bench": CameraConfig(url=str(source), detect_fps=5.0)},
            )  # fmt: skip
            pool = InferencePool.from_config(setup.detector, setup.models_path)
            try:
                runs[name] = pipeline_run(str(source), setup, pool, None)
            finally:
                pool.stop()
        reference = runs["openvino_f32"]["trace"]
        out[clip] = {
            name: {
                f"kept_{frames}": track_recall(reference, run["trace"], frames)[0] for frames in (3, 10)
            } | {"tracks": run["tracks"]}
            for name, run in runs.items()
        }
    return out


def timings(detectors: dict[str, Any], image: np.ndarray, runs: int) -> dict[str, dict[str, float]]:
    for detector in detectors.values():
        for _ in range(5):
            detector.detect(image)
    samples: dict[str, list[float]] = {name: [] for name in detectors}
    for _ in range(runs):
        for name, detector in detectors.items():
            started = time.perf_counter()
            detector.detect(image)
            samples[name].append((time.perf_counter() - started) * 1000.0)
    out = {}
    for name, values in samples.items():
        ordered = sorted(values)
        out[name] = {"p50": ordered[len(ordered) // 2], "p95": ordered[int(0.95 * (len(ordered) - 1))]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--step", type=int, default=2, help="every n-th frame of each clip for agreement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tracks", action="store_true", help="also the daemon's tracks per variant (slower)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(f"needs the shared clips in {SHARED}", file=sys.stderr)
        return 2
    detectors = {
        name: create_detector(config.model_copy(update={"threads": args.threads}), args.models_dir)
        for name, config in VARIANTS.items()
    }
    files = {"vtest": SHARED / "video" / "vtest.avi", "walking": SHARED / "video" / "supervision_walking.mp4"}
    scratch = tempfile.TemporaryDirectory(prefix="camd-reencode-")
    copies = {name: reencoded(path, Path(scratch.name)) for name, path in files.items()}

    def sampled(path: Path) -> list[np.ndarray]:
        return [f.image for f in itertools.islice(clip_frames(str(path)), 0, None, args.step)]

    clips = {name: sampled(path) for name, path in files.items()}
    report: dict[str, Any] = {"runs": args.runs, "step": args.step, "threads": args.threads}
    report["ms_480x360"] = timings(detectors, clips["vtest"][0], args.runs)
    report["ms_1280x720"] = timings(detectors, clips["walking"][0], args.runs // 2)
    results = {
        name: {clip: [d.detect(f) for f in frames] for clip, frames in clips.items()}
        for name, d in detectors.items()
    }
    report["agreement"] = {
        name: {clip: agreement(results["opencv_f32"][clip], results[name][clip]) for clip in clips}
        for name in detectors
    }
    reference = detectors["opencv_f32"]
    report["agreement"]["opencv_f32_on_reencode"] = {
        clip: agreement(results["opencv_f32"][clip], [reference.detect(f) for f in sampled(copies[clip])])
        for clip in clips
    }
    if args.tracks:
        report["tracks"] = track_agreement(files, copies, args.models_dir)
    scratch.cleanup()
    photos = {}
    for photo in ("bus", "zidane"):
        image = cv2.imread(str(args.models_dir / "sample_photos" / f"{photo}.jpg"))
        photos[photo] = {
            name: [(d.label, round(d.score, 3)) for d in d_.detect(image) if d.score >= 0.25]
            for name, d_ in detectors.items()
        }
    report["photos"] = photos
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for size in ("ms_480x360", "ms_1280x720"):
            for name, t in report[size].items():
                print(f"{size} {name:<15} p50 {t['p50']:6.1f}  p95 {t['p95']:6.1f}")
        for name, per_clip in report["agreement"].items():
            for clip, a in per_clip.items():
                print(f"{name:<15} {clip:<8} matched {a['matched']}/{a['reference_boxes']} "
                      f"({100 * a['matched_share']:.1f}%), extra {a['extra']}, boxes found "
                      f"{100 * a['boxes_found_share']:.1f}%, "
                      f"mean |score diff| {a['mean_abs_score_diff']:.3f}, "
                      f"bias {a['score_bias']:+.3f}")  # fmt: skip
        for clip, per_variant in report.get("tracks", {}).items():
            for name, kept in per_variant.items():
                print(f"tracks {clip:<8} {name:<25} {kept['tracks']:3} announced; the reference's kept: "
                      f">= 3 frames {kept['kept_3']:.3f}, >= 10 frames {kept['kept_10']:.3f}")
        for photo, per in photos.items():
            for name, dets in per.items():
                print(photo, name, dets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
