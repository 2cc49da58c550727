"""Walkers end to end: enroll people from one part of a real clip through the daemon, decide the rest.

vtest.avi (../shared/data/video, 795 frames at 10 frames/s) is cut at frame SPLIT. Part A plays through
the real daemon (detector, tracker, identity, memory) with nobody enrolled; each returning person
(camd/eval/truth/vtest.json) seen in part A is enrolled from the sighting of their longest labelled
track there (`camd enroll NAME --sighting ID`). Part B then plays through the daemon on the same memory,
and every finished person track in B is scored against the labels:

- enrolled people: named right / named as someone else / left a stranger (or undecided);
- everyone else (people never enrolled, unlabelled tracks): given an enrolled name (a false name);
- a person never enrolled who returns within part B: kept the same unknown-N id (re-linked) or not.

`--cast` plays part B with a blue colour cast (another camera's white balance: B x1.25, R x0.8), as
reid/train's camera 2. Nothing here is tuned: thresholds are the shipped calibrations
(camd/identity/calibrations.py, measured on reid/train).

`--adapt` (issue 14's end-to-end figure): after part A and the enrolments, a copy of the installation
runs camd adapt's procedure on part A's tracks (camd/adapt/run.py `adapt_on`: held-out quarter, guardrail,
thresholds re-derived); part B then plays on both installations, the shipped network's and the adapted
one's, and both are scored the same way. The adapted network is put in use whatever the guardrail said
(its decision is reported), so that the figure shows what the network would have done; when part A's
held-out tracks have too few pairs of surely different people to re-derive thresholds, the shipped
calibration is used with it (said in the output).

    .venv/bin/python benchmarks/walkers_e2e.py --body-model osnet [--cast] [--adapt] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from camd.config.schema import Config  # noqa: E402
from camd.daemon import Daemon  # noqa: E402
from camd.eval.truth import iou, load_truth  # noqa: E402
from camd.identity import enroll  # noqa: E402
from camd.identity.service import IdentityService  # noqa: E402
from camd.types import EventKind, TrackEvent  # noqa: E402

SPLIT = 410  # red-jacket-woman first appears at 424: she is in part B only (a stranger who returns)
CAMERA = "campus"


def cut(source: Path, out: Path, first: int, last: int, cast: bool) -> Path:
    """Frames first..last-1 of `source`, re-encoded (optionally with a blue cast) to `out`."""
    with av.open(str(source)) as inp, av.open(str(out), "w") as dst:
        stream_in = inp.streams.video[0]
        stream = dst.add_stream("libx264", rate=10)
        stream.width, stream.height = stream_in.codec_context.width, stream_in.codec_context.height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "g": "10"}
        for index, frame in enumerate(inp.decode(stream_in)):
            if index >= last:
                break
            if index < first:
                continue
            image = frame.to_ndarray(format="bgr24")
            if cast:
                gains = np.array([1.25, 1.0, 0.8], np.float32)  # BGR
                image = np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    return out


def play(clip: Path, state: Path, models: Path, body_model: str, first_frame: int) -> list[dict[str, Any]]:
    """Run the daemon over `clip`; per finished person track: its boxes by original frame, its identity."""
    config = Config.model_validate({
        "state_dir": str(state), "models_dir": str(models), "identity": {"body_model": body_model},
        "cameras": {CAMERA: {"url": str(clip), "detect_fps": 5}},
    })  # fmt: skip
    boxes: dict[int, dict[int, Any]] = defaultdict(dict)
    ends: dict[int, Any] = {}
    holder: dict[str, Daemon] = {}

    def sink(event: TrackEvent) -> None:
        origin = holder["daemon"].pipelines[CAMERA].source.clock_origin
        after = event.after
        frame = first_frame + round((after.frame_time - origin) * 10.0)
        boxes[after.track_id][frame] = after.box
        if event.kind is EventKind.END and after.label == "person":
            ends[after.track_id] = after

    daemon = Daemon(config, extra_sinks=[sink], mqtt=False)
    holder["daemon"] = daemon
    daemon.run(install_signals=False)
    return [{"track": tid, "boxes": boxes[tid], "after": after} for tid, after in ends.items()]


def label(truth: Any, track: dict[str, Any], min_iou: float = 0.3) -> str | None:
    """Who a daemon track follows. Its boxes are known only at its events (new, updates, end), a
    handful per track, so the rule is looser than Truth.label_of's: the labelled person overlapping
    (IoU >= min_iou) most of the samples that overlap anyone, and at least half of all its samples."""
    votes: Counter[str] = Counter()
    for frame, box in track["boxes"].items():
        scored = [(iou(box, b), who) for who, b in truth.boxes_at(frame)]
        best = max(scored, default=(0.0, ""))
        if best[0] >= min_iou:
            votes[best[1]] += 1
    if not votes:
        return None
    who, count = votes.most_common(1)[0]
    return who if count >= 0.5 * len(track["boxes"]) and count >= 0.6 * sum(votes.values()) else None


def run(body_model: str, cast: bool, models: Path, data: Path, adapt: bool = False) -> dict[str, Any]:
    truth = load_truth("vtest")
    source = data / truth.clip
    with tempfile.TemporaryDirectory(prefix="camd-walkers-") as work:
        work_dir = Path(work)
        state = work_dir / "state"
        part_a = cut(source, work_dir / "a.mp4", 0, SPLIT, cast=False)
        part_b = cut(source, work_dir / "b.mp4", SPLIT, truth.frames, cast=cast)

        seen_a = play(part_a, state, models, body_model, 0)
        returning = {p.label for p in truth.returning()}
        best: dict[str, tuple[int, str]] = {}
        for track in seen_a:
            who = label(truth, track)
            if who in returning:
                frames = track["after"].frames
                if who not in best or frames > best[who][0]:
                    best[who] = (frames, track["after"].event_id)
        config = Config.model_validate({
            "state_dir": str(state), "models_dir": str(models), "identity": {"body_model": body_model},
            "cameras": {CAMERA: {"url": str(part_b)}},
        })  # fmt: skip
        service = IdentityService(config, load_extractors=False)
        try:
            for who, (_, sighting) in sorted(best.items()):
                enroll.enroll_sighting(service, who, "family", sighting)
            body = service.body_model.describe()
        finally:
            service.close()

        adapted, seen_b_adapted = None, []
        if adapt:  # the same installation after part A, adapted on its tracks
            adapted_state = work_dir / "state-adapted"
            shutil.copytree(state, adapted_state)
            adapted = adapt_installation(adapted_state, models, body_model, part_b)
            seen_b_adapted = play(part_b, adapted_state, models, body_model, SPLIT)
        seen_b = play(part_b, state, models, body_model, SPLIT)
    enrolled = set(best)
    result = {
        "body_model": body, "cast_on_part_b": cast, "split_frame": SPLIT,
        "enrolled": sorted(enrolled),
        "enrolled_from": {who: sighting for who, (_, sighting) in sorted(best.items())},
        **score(truth, seen_b, enrolled),
    }  # fmt: skip
    if adapted is not None:
        result["adapted"] = {**adapted, **score(truth, seen_b_adapted, enrolled)}
    return result


def score(truth: Any, seen_b: list[dict[str, Any]], enrolled: set[str]) -> dict[str, Any]:
    """Part B's tracks against the labels: enrolled people named right / as someone else / not; others
    given an enrolled name; unnamed labelled people who returned kept their unknown-N id (re-linked), and
    unknown-N ids given to two or more labelled people (strangers merged)."""
    outcome: Counter[str] = Counter()
    stranger_ids: dict[str, list[str | None]] = defaultdict(list)
    rows: list[dict[str, Any]] = []
    for track in seen_b:
        who = label(truth, track)
        identity = track["after"].identity
        name = identity.name
        if who in enrolled:
            key = ("named right" if name == who else "named as someone else" if name else
                   "stranger" if identity.identity_class == "stranger" else "undecided")  # fmt: skip
            outcome[f"enrolled: {key}"] += 1
        else:
            outcome["others: given an enrolled name" if name else "others: not named"] += 1
            if who is not None and not name:
                stranger_ids[who].append(identity.global_id)
        rows.append({"track": track["track"], "label": who, "frames": track["after"].frames,
                     "first_frame": min(track["boxes"]), "last_frame": max(track["boxes"]),
                     "identity": name, "class": identity.identity_class, "global_id": identity.global_id,
                     "confidence": identity.confidence, "evidence": dict(identity.evidence),
                     "boxes": {f: [round(float(v)) for v in b] for f, b in sorted(track["boxes"].items())}})
    relinked = {who: ids for who, ids in stranger_ids.items() if len(ids) > 1}
    # A returning stranger's later tracks that carried an id one of their earlier tracks had.
    outcome["strangers: later tracks re-linked"] = sum(
        sum(1 for k, i in enumerate(ids) if i is not None and i in ids[:k]) for ids in relinked.values())
    outcome["strangers: later tracks"] = sum(len(ids) - 1 for ids in relinked.values())
    people_of: dict[str, set[str]] = defaultdict(set)
    for who, ids in stranger_ids.items():
        for i in ids:
            if i is not None:
                people_of[i].add(who)
    outcome["strangers: ids given to 2+ people (merged)"] = sum(len(w) > 1 for w in people_of.values())
    return {"tracks_in_b": len(seen_b), "outcome": dict(sorted(outcome.items())),
            "returning_strangers": relinked, "tracks": rows}  # fmt: skip


def adapt_installation(state: Path, models: Path, body_model: str, part_b: Path) -> dict[str, Any]:
    """camd adapt's procedure on the installation's tracks so far; the network is put in use either way."""
    from camd.adapt import run as adapt_run
    from camd.adapt.store import AdaptedStore
    from camd.adapt.tracks import load_tracks
    from camd.identity.calibrations import calibration_for

    config = Config.model_validate({
        "state_dir": str(state), "models_dir": str(models), "identity": {"body_model": body_model},
        "cameras": {CAMERA: {"url": str(part_b)}},
    })  # fmt: skip
    base, current = adapt_run.base_and_current(config)
    tracks = load_tracks(config.sightings_path)
    store = AdaptedStore(config.adapted_path, base.space)
    with tempfile.TemporaryDirectory(prefix="camd-walkers-adapt-") as work:
        outcome = adapt_run.adapt_on(
            tracks, base_weights=adapt_run.base_weights_file(config), variant=config.identity.osnet.variant,
            current_onnx=current.onnx, current_calibration=calibration_for(current), work=Path(work),
            grey_onnx=base.onnx, current_grey_onnx=current.grey_onnx, epochs=config.adapt.epochs, threads=1,
        )  # fmt: skip
        if outcome.onnx is None:
            raise SystemExit(f"nothing trained: {outcome.decision.reason}")
        thresholds = "re-derived"
        if outcome.calibration is None:  # too few pairs of surely different people: the shipped ones
            outcome.calibration, thresholds = calibration_for(current), f"shipped: {outcome.calibration_how}"
        store.use(adapt_run.keep(store, outcome, current))
    guard = outcome.as_dict()
    return {"guardrail": {k: guard[k] for k in ("replaced", "reason", "check_before", "check_after",
                                                "tracks", "train", "grey_half")},
            "thresholds": thresholds}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--body-model", choices=["osnet", "mobilenetv2"], default="osnet")
    parser.add_argument("--cast", action="store_true", help="part B with a blue colour cast")
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--adapt", action="store_true", help="part B also after adapting on part A's tracks")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.body_model, args.cast, args.models_dir, args.data, args.adapt)
    print(json.dumps(result, indent=None if args.json else 1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
