"""Identity labels for a clip, made by eye: camd's tracks, contact sheets to look at, then the truth file.

    # 1. track the clip (every frame) and draw the sheets, outside the repo (they hold crops of the footage)
    python benchmarks/label_walkers.py sheets ../shared/data/video/vtest.avi /tmp/vtest
    #    overview-*.png: whole frames with track ids; page-*.png: six segments a page, ten crops each;
    #    segment-*.png: one segment, twenty crops. A segment is a stretch of one track between contacts
    #    with other walkers, named TRACK:FIRST-LAST (e.g. 12:100-180); trackers swap walkers at contacts.
    # 2. put several segments side by side to decide whether they are one person
    python benchmarks/label_walkers.py compare /tmp/vtest /tmp/cmp.png 20:154-159 38:235-310
    # 3. write the grouping: {"clip": "video/vtest.avi", "notes": "...", "people": [{"label": "...",
    #    "description": "...", "upper": "...", "lower": "...", "uncertain": false, "maybe_same_as": [],
    #    "passages": [["5:19-22", "10:44-64"], ["39:254-261"]]}]}   (a passage: segments, in order)
    #    A part keeps only its frames clear of other walkers, unless it ends with "!" (checked by eye).
    # 4. the truth file (boxes every --every frames; no track ids needed to use it)
    python benchmarks/label_walkers.py truth /tmp/vtest grouping.json camd/eval/truth/vtest.json

A truth file is also a grouping: `truth /tmp/vtest camd/eval/truth/vtest.json camd/eval/truth/vtest.json`
remakes it from a fresh `sheets` run (same detector, same tracker settings: the same track ids).
Crops never go into the repo, only boxes and descriptions.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camd.config.schema import TrackerConfig
from camd.eval.tracks import ClipInfo, ClipTrack, clip_info, decode, track_clip
from camd.eval.truth import TRUTH_VERSION

CROP_HEIGHT = 150
CROPS_PER_TRACK = 10  # on the pages, several tracks each
DETAIL_CROPS = 20  # in each track's own sheet, to find where a track jumps to another person
THUMB_WIDTH = 240
TRACKS_PER_PAGE = 6
# A track is cut where its box and another's overlap this much (of the smaller box): ByteTrack swaps
# walkers who pass each other, and a swap is hard to see on a sheet; the contact frames are dropped.
CONTACT_OVERLAP = 0.3
MAX_HOLE = 3  # frames a track may miss without a cut (a swap can hide in a longer hole)
NEAR_FRAMES = 2  # a contact counts this many frames before and after it


def crop(image: np.ndarray, box: tuple[float, ...], height: int = CROP_HEIGHT) -> np.ndarray:
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (round(v) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    patch = image[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
    scale = height / patch.shape[0]
    width = max(8, min(int(patch.shape[1] * scale), 3 * height))
    return cv2.resize(patch, (width, height), interpolation=cv2.INTER_CUBIC)


@dataclass(frozen=True)
class Segment:
    """A stretch of one track between contacts with other people: the unit labelled by eye."""

    track_id: int
    boxes: dict[int, tuple[float, ...]]
    announced: bool

    @property
    def spec(self) -> str:
        return f"{self.track_id}:{min(self.boxes)}-{max(self.boxes)}"


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over the smaller box: high when one walker passes behind another."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


def segments(tracks: dict[int, ClipTrack], min_boxes: int = 3) -> list[Segment]:
    """Cut every track where its box overlaps another track's (a tracker swaps walkers there) and
    where it was lost for more than MAX_HOLE frames; the contact frames themselves are left out."""
    by_frame: dict[int, list[tuple[int, tuple[float, ...]]]] = {}
    for tid, track in tracks.items():
        for frame, box in track.boxes.items():
            by_frame.setdefault(frame, []).append((tid, box))
    out = []
    for tid, track in sorted(tracks.items()):
        run: dict[int, tuple[float, ...]] = {}
        last = None
        for frame in sorted(track.boxes):
            box = track.boxes[frame]
            # Also against boxes a moment before and after: where one walker hides another, the
            # detector sees one of them per frame and the two tracks never have a box in the same frame.
            window = range(frame - NEAR_FRAMES, frame + NEAR_FRAMES + 1)
            near = (b for f in window for b in by_frame.get(f, ()))
            contact = any(overlap(box, other) >= CONTACT_OVERLAP for o, other in near if o != tid)
            if contact or (last is not None and frame - last > MAX_HOLE):
                if len(run) >= min_boxes:
                    out.append(Segment(tid, run, track.announced))
                run = {}
            if not contact:
                run[frame] = box
            last = frame
        if len(run) >= min_boxes:
            out.append(Segment(tid, run, track.announced))
    return sorted(out, key=lambda s: (min(s.boxes), s.track_id))


def sample_frames(boxes: dict[int, tuple[float, ...]], count: int) -> list[int]:
    frames = sorted(boxes)
    if len(frames) <= count:
        return frames
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in picks]


def segment_row(segment: Segment, images: dict[int, np.ndarray], crops: int = CROPS_PER_TRACK) -> np.ndarray:
    """Header line, then the segment's crops (frame number under each) and a frame thumbnail with
    its first (green), middle (red) and last (blue) box."""
    picks = sample_frames(segment.boxes, crops)
    tiles = []
    for index in picks:
        tile = crop(images[index], segment.boxes[index])
        tile = cv2.copyMakeBorder(tile, 0, 18, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(tile, str(index), (2, tile.shape[0] - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1)
        tiles.append(tile)
    middle = picks[len(picks) // 2]
    thumb = images[middle].copy()
    for index, colour in ((picks[0], (0, 255, 0)), (middle, (0, 0, 255)), (picks[-1], (255, 0, 0))):
        x1, y1, x2, y2 = (int(v) for v in segment.boxes[index])
        cv2.rectangle(thumb, (x1, y1), (x2, y2), colour, 2)
    scale = THUMB_WIDTH / thumb.shape[1]
    thumb = cv2.resize(thumb, (THUMB_WIDTH, int(thumb.shape[0] * scale)))
    height = max(CROP_HEIGHT + 18, thumb.shape[0])
    tiles.append(thumb)
    tiles = [cv2.copyMakeBorder(t, 0, height - t.shape[0], 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
             for t in tiles]
    body = np.hstack(tiles)
    header = np.full((24, body.shape[1], 3), 230, np.uint8)
    text = (f"{segment.spec}  ({len(segment.boxes)} boxes)"
            f"{'' if segment.announced else '  track not announced'}")
    cv2.putText(header, text, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1)
    return np.vstack([header, body])


def overview_tile(image: np.ndarray, index: int, tracks: dict[int, ClipTrack]) -> np.ndarray:
    """A whole frame with each track's box and id: who is where at that moment."""
    tile = image.copy()
    for tid, track in tracks.items():
        if index in track.boxes:
            x1, y1, x2, y2 = (int(v) for v in track.boxes[index])
            cv2.rectangle(tile, (x1, y1), (x2, y2), (0, 0, 255), 1)
            cv2.putText(tile, str(tid), (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1)
    cv2.putText(tile, f"frame {index}", (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1)
    return tile


def pad_width(rows: list[np.ndarray]) -> list[np.ndarray]:
    width = max(r.shape[1] for r in rows)
    return [cv2.copyMakeBorder(r, 0, 6, 0, width - r.shape[1], cv2.BORDER_CONSTANT, value=(255, 255, 255))
            for r in rows]


def load_tracks(dump: dict[str, Any]) -> dict[int, ClipTrack]:
    tracks = {}
    for tid, raw in dump["tracks"].items():
        track = ClipTrack(int(tid), raw["label"], announced=raw["announced"])
        track.boxes = {int(i): tuple(b) for i, b in raw["boxes"].items()}
        track.times = {int(i): t for i, t in raw["times"].items()}
        tracks[int(tid)] = track
    return tracks


def run_tracks(clip: Path, out: Path, models_dir: Path, fps: float | None, tracker: TrackerConfig) -> dict:
    info = clip_info(clip)
    tracks = track_clip(clip, models_dir, fps, tracker_config=tracker)
    dump = {
        "clip": str(clip), "width": info.width, "height": info.height, "fps": info.fps,
        "frames": info.frames, "sampled_fps": fps, "tracker": tracker.model_dump(),
        "tracks": {
            str(tid): {
                "label": t.label, "announced": t.announced,
                "boxes": {str(i): [round(float(v), 1) for v in b] for i, b in sorted(t.boxes.items())},
                "times": {str(i): round(float(s), 4) for i, s in sorted(t.times.items())},
            }
            for tid, t in sorted(tracks.items())
        },
    }
    (out / "tracks.json").write_text(json.dumps(dump))
    return dump


def make_sheets(
    clip: Path, out: Path, models_dir: Path, fps: float | None, labels: set[str], tracker: TrackerConfig,
    retrack: bool, overview_every: int,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cached = out / "tracks.json"
    dump = json.loads(cached.read_text()) if cached.exists() and not retrack else None
    if dump is None or dump["clip"] != str(clip):
        dump = run_tracks(clip, out, models_dir, fps, tracker)
    tracks = {tid: t for tid, t in load_tracks(dump).items() if t.label in labels}
    parts = segments(tracks)
    wanted = {i for s in parts for n in (CROPS_PER_TRACK, DETAIL_CROPS) for i in sample_frames(s.boxes, n)}
    tiles, images = [], {}
    for frame in decode(clip):
        if overview_every and frame.index % overview_every == overview_every // 2:
            tiles.append(overview_tile(frame.image, frame.index, tracks))
        if frame.index in wanted:
            images[frame.index] = frame.image
    rows = []
    for part in parts:
        rows.append(segment_row(part, images))
        name = part.spec.replace(":", "_")
        cv2.imwrite(str(out / f"segment-{name}.png"), segment_row(part, images, DETAIL_CROPS))
    pages = 0
    for start in range(0, len(rows), TRACKS_PER_PAGE):
        pages += 1
        page = np.vstack(pad_width(rows[start:start + TRACKS_PER_PAGE]))
        cv2.imwrite(str(out / f"page-{pages:02d}.png"), page)
    for n, start in enumerate(range(0, len(tiles), 4), 1):
        group = tiles[start:start + 4] + [np.zeros_like(tiles[0])] * (4 - len(tiles[start:start + 4]))
        cv2.imwrite(str(out / f"overview-{n:02d}.png"),
                    np.vstack([np.hstack(group[:2]), np.hstack(group[2:])]))
    (out / "segments.txt").write_text("\n".join(p.spec for p in parts) + "\n")
    print(f"{len(tracks)} tracks ({sum(t.announced for t in tracks.values())} announced), "
          f"{len(parts)} segments on {pages} pages in {out}")


def compare(sheets: Path, out: Path, specs: list[str]) -> None:
    """One sheet with a row per segment (TRACK:FIRST-LAST, or TRACK for all of it), to compare by eye."""
    dump = json.loads((sheets / "tracks.json").read_text())
    tracks = load_tracks(dump)
    parts = []
    for spec in specs:
        tid, _, span = spec.partition(":")
        track = tracks[int(tid)]
        low, high = (int(v) for v in span.split("-")) if span else (track.first_frame, track.last_frame)
        boxes = {f: b for f, b in track.boxes.items() if low <= f <= high}
        parts.append(Segment(track.track_id, boxes, track.announced))
    wanted = {f for part in parts for f in sample_frames(part.boxes, CROPS_PER_TRACK)}
    images = {f.index: f.image for f in decode(Path(dump["clip"])) if f.index in wanted}
    cv2.imwrite(str(out), np.vstack(pad_width([segment_row(part, images) for part in parts])))


Boxes = dict[int, tuple[list[float], float]]  # frame -> (box, pts seconds)


def passage_frames(spec: str, tracks: dict[int, ClipTrack], clear: set[tuple[int, int]]) -> Boxes:
    """'12': all of track 12; '12:100-180': its frames 100..180; only frames where it touches nobody,
    unless the spec ends with '!' (checked by eye: people seated side by side always touch)."""
    forced = spec.endswith("!")
    tid_text, _, span = spec.rstrip("!").partition(":")
    track = tracks[int(tid_text)]
    low, high = (int(v) for v in span.split("-")) if span else (track.first_frame, track.last_frame)
    boxes = {f: (list(b), track.times[f]) for f, b in track.boxes.items()
             if low <= f <= high and (forced or (track.track_id, f) in clear)}
    if not boxes:
        print(f"note: passage part {spec!r} holds no box clear of other walkers; left out")
    return boxes


def runs_of(frames: list[int], track: ClipTrack) -> list[list[int]]:
    """Split a track part where a box is missing: where it touched another walker (left out) or was lost
    for more than MAX_HOLE frames. The truth does not interpolate across such a cut."""
    runs = [[frames[0]]]
    for before, after in itertools.pairwise(frames):
        touched = any(f in track.boxes for f in range(before + 1, after))
        if touched or after - before > MAX_HOLE:
            runs.append([])
        runs[-1].append(after)
    return runs


def passage_entry(runs: list[list[int]], boxes: Boxes, every: int, parts: list[str]) -> dict[str, Any]:
    """Samples at every `every`-th frame and at each run's ends; 'cut' marks a sample not to be
    interpolated from the one before."""
    samples = []
    for n, run in enumerate(runs):
        keep = sorted({f for f in run if f % every == 0} | {run[0], run[-1]})
        for f in keep:
            box, t = boxes[f]
            sample: dict[str, Any] = {"frame": f, "t": round(t, 3), "box": [round(v) for v in box]}
            if n and f == run[0]:
                sample["cut"] = True
            samples.append(sample)
    return {"first_frame": runs[0][0], "last_frame": runs[-1][-1], "tracks": parts, "boxes": samples}


def clock_of(info: ClipInfo) -> tuple[float, list[list[float]]]:
    """Frame i's stream time is offset + i / fps but for a few frames (vtest's first six, whose AVI
    timestamps are out of order): those are listed with their exact time, as the daemon computes it."""
    offset = statistics.median(t - i / info.fps for i, t in enumerate(info.times))
    off = [[i, t] for i, t in enumerate(info.times) if abs(t - (offset + i / info.fps)) > 0.1 / info.fps]
    return offset, off


def make_truth(sheets: Path, grouping_file: Path, out: Path, every: int, name: str) -> None:
    dump = json.loads((sheets / "tracks.json").read_text())
    grouping = json.loads(grouping_file.read_text())
    tracks = load_tracks(dump)
    clear = {(s.track_id, f) for s in segments(tracks, min_boxes=1) for f in s.boxes}
    people = []
    owner: dict[tuple[int, int], str] = {}
    for person in grouping["people"]:
        passages = []
        for passage in person["passages"]:
            parts = passage["tracks"] if isinstance(passage, dict) else passage  # a truth file or a grouping
            boxes: Boxes = {}
            runs: list[list[int]] = []
            for spec in parts:
                tid = int(str(spec).rstrip("!").partition(":")[0])
                part = passage_frames(str(spec), tracks, clear)
                for frame in part:
                    if (tid, frame) in owner or frame in boxes:
                        first = owner.get((tid, frame), person["label"])
                        raise ValueError(f"{spec}: frame {frame} is given twice ({first}, {person['label']})")
                    owner[(tid, frame)] = person["label"]
                boxes.update(part)
                if part:
                    runs.extend(runs_of(sorted(part), tracks[tid]))
            if not runs:
                raise ValueError(f"{person['label']}: passage {parts} holds no box clear of other walkers")
            passages.append(passage_entry(sorted(runs), boxes, every, [str(p) for p in parts]))
        passages.sort(key=lambda p: p["first_frame"])
        fields = ("label", "description", "upper", "lower", "uncertain")
        people.append({k: person[k] for k in fields} | {"maybe_same_as": person.get("maybe_same_as", [])}
                      | {"passages": passages})
    tracker = dump["tracker"]
    info = clip_info(Path(dump["clip"]))
    offset, irregular = clock_of(info)
    truth = {
        "version": TRUTH_VERSION, "name": name, "clip": grouping["clip"],
        "width": info.width, "height": info.height, "fps": info.fps, "frames": info.frames,
        "sample_every": every, "pts_offset": round(offset, 6), "irregular_times": irregular,
        "made_with": (f"benchmarks/label_walkers.py: camd's default detector on every frame, ByteTrack "
                      f"match_iou {tracker['match_iou']}, lost_track_s {tracker['lost_track_s']}; "
                      "segments grouped by eye ('tracks' names them: TRACK:FIRST-LAST of that run)"),
        "notes": grouping.get("notes", ""),
        "people": people,
    }
    text = json.dumps(truth, separators=(",", ":"))
    # One line per passage keeps the file small and a relabelling's diff readable.
    text = text.replace('{"first_frame"', '\n{"first_frame"').replace('{"label"', '\n{"label"')
    out.write_text(text + "\n")
    print(f"{len(people)} people, {sum(len(p['passages']) for p in people)} passages, "
          f"{sum(len(q['boxes']) for p in people for q in p['passages'])} boxes, "
          f"{out.stat().st_size / 1024:.1f} KB -> {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sheets = sub.add_parser("sheets", help="track a clip; write tracks.json and contact sheets")
    sheets.add_argument("clip", type=Path)
    sheets.add_argument("out", type=Path)
    sheets.add_argument("--models-dir", type=Path, default=Path("var/models"))
    sheets.add_argument("--fps", type=float, default=None, help="sampling rate (default: every frame)")
    sheets.add_argument("--labels", default="person", help="comma-separated labels to keep")
    # Labelling wants pure tracks more than long ones: a stricter match and a short memory make more
    # fragments (grouped by eye anyway) and fewer tracks that jump from one walker to another.
    sheets.add_argument("--match-iou", type=float, default=0.3)
    sheets.add_argument("--lost-s", type=float, default=0.5)
    sheets.add_argument("--retrack", action="store_true", help="track again even if tracks.json exists")
    sheets.add_argument("--overview-every", type=int, default=25, help="a whole-frame view every N frames")
    side = sub.add_parser("compare", help="segments side by side, one row each")
    side.add_argument("sheets", type=Path)
    side.add_argument("out", type=Path)
    side.add_argument("specs", nargs="+", help="TRACK:FIRST-LAST or TRACK")
    truth = sub.add_parser("truth", help="turn a grouping of tracks into the truth JSON")
    truth.add_argument("sheets", type=Path)
    truth.add_argument("grouping", type=Path)
    truth.add_argument("out", type=Path)
    truth.add_argument("--every", type=int, default=5, help="keep boxes at every N-th frame")
    truth.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    if args.command == "sheets":
        tracker = TrackerConfig(match_iou=args.match_iou, lost_track_s=args.lost_s)
        make_sheets(args.clip, args.out, args.models_dir, args.fps, set(args.labels.split(",")), tracker,
                    args.retrack, args.overview_every)
    elif args.command == "compare":
        compare(args.sheets, args.out, args.specs)
    else:
        make_truth(args.sheets, args.grouping, args.out, args.every, args.name or args.out.stem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
