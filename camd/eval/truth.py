"""Who is who in the shared clips: identity labels made by eye, as boxes over time (camd/eval/truth/*.json).

Each person of a clip has passages (one crossing of the scene each) with their box at sampled frames,
in the clip's own pixels and decode-order frame numbers. Nothing in the file depends on a tracker:
a track of any tracker gets a person's label when its boxes overlap that person's (IoU >= 0.5) on most
of the frames where the truth has someone to compare with. Between two samples a passage's box is
interpolated; across a longer hole (the person hidden or missed) it is unknown.

How the files were made, and how to remake one: benchmarks/label_walkers.py.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from camd.types import Box

TRUTH_VERSION = 1
TRUTH_DIR = Path(__file__).resolve().parent / "truth"
MATCH_IOU = 0.5
# Interpolate between samples at most this many sample steps apart; a longer hole is unknown.
MAX_GAP_STEPS = 2


class TruthError(ValueError):
    """A truth file that is missing or malformed; the message names the file and the field."""


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def label_matches(pattern: str, label: str) -> bool:
    """'jeans-*' matches every label that starts with 'jeans-'; anything else only itself."""
    return label.startswith(pattern[:-1]) if pattern.endswith("*") else label == pattern


@dataclass(frozen=True, slots=True)
class Sample:
    frame: int
    t: float  # stream time in seconds (the daemon's Frame.pts_seconds)
    box: Box
    cut: bool = False  # not to be interpolated from the sample before (the person was hidden between)


@dataclass(frozen=True, slots=True)
class Passage:
    """One continuous appearance of a person (hidden for a moment at most)."""

    person: str
    samples: tuple[Sample, ...]
    max_gap: int  # frames: samples further apart are not interpolated across

    @property
    def first_frame(self) -> int:
        return self.samples[0].frame

    @property
    def last_frame(self) -> int:
        return self.samples[-1].frame

    def box_at(self, frame: int) -> Box | None:
        """The person's box at a frame: a sample, or interpolated between two close samples."""
        frames = [s.frame for s in self.samples]
        i = bisect.bisect_left(frames, frame)
        if i < len(frames) and frames[i] == frame:
            return self.samples[i].box
        if i == 0 or i == len(frames):
            return None
        before, after = self.samples[i - 1], self.samples[i]
        if after.cut or after.frame - before.frame > self.max_gap:
            return None
        w = (frame - before.frame) / (after.frame - before.frame)
        return tuple(a + w * (b - a) for a, b in zip(before.box, after.box, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Person:
    label: str
    description: str
    upper: str  # clothing colour above the waist, as a person would say it
    lower: str
    uncertain: bool  # may be the same person as another label (see maybe_same_as), or not all one person
    passages: tuple[Passage, ...]
    # Labels this person may be; 'jeans-*' stands for every label starting with 'jeans-'.
    maybe_same_as: tuple[str, ...] = ()

    def may_be(self, label: str) -> bool:
        """True when this person might be `label` (uncertain labelling): a name given to one of them
        for the other is then neither right nor wrong."""
        return label == self.label or any(label_matches(p, label) for p in self.maybe_same_as)


@dataclass(frozen=True, slots=True)
class Truth:
    name: str
    clip: str  # path under ../shared/data
    width: int
    height: int
    fps: float
    frames: int
    sample_every: int
    people: tuple[Person, ...]
    # Frame i's stream time is pts_offset + i / fps, except for the frames in `irregular` (exact times):
    # vtest's AVI has out-of-order timestamps, and camd's StreamClock gives its first six frames
    # 0.1, 0.4, 0.5, ... s before settling on (i + 2) / 10 s.
    pts_offset: float
    irregular: Mapping[int, float]

    def time_of(self, frame: int) -> float:
        """The stream time camd's sources give a frame (its Frame.pts_seconds)."""
        return self.irregular.get(frame, self.pts_offset + frame / self.fps)

    def person(self, label: str) -> Person:
        for person in self.people:
            if person.label == label:
                return person
        raise KeyError(f"{self.name}: no person labelled {label!r}")

    def returning(self, min_gap_s: float = 1.0) -> list[Person]:
        """People labelled with confidence who are seen in two passages or more, out of sight for at
        least min_gap_s between two of them: enroll from an early passage, recognise in a later one."""
        min_gap_frames = min_gap_s * self.fps
        out = []
        for person in self.people:
            if person.uncertain or len(person.passages) < 2:
                continue
            gaps = [b.first_frame - a.last_frame for a, b in itertools.pairwise(person.passages)]
            if max(gaps) >= min_gap_frames:
                out.append(person)
        return out

    def frame_of(self, pts: float) -> int:
        """The decode-order frame index of a stream time (a daemon frame's pts_seconds)."""
        for frame, t in self.irregular.items():
            if t == pts:
                return frame
        return round((pts - self.pts_offset) * self.fps)

    def boxes_at(self, frame: int) -> list[tuple[str, Box]]:
        """Every labelled person's box at a frame."""
        out = []
        for person in self.people:
            for passage in person.passages:
                if passage.first_frame <= frame <= passage.last_frame:
                    box = passage.box_at(frame)
                    if box is not None:
                        out.append((person.label, box))
        return out

    def label_of(self, track_boxes: Mapping[int, Box], min_iou: float = MATCH_IOU) -> str | None:
        """The person a track follows: the one whose box overlaps the track's at IoU >= min_iou on more
        than half of the track's frames where the truth has anyone; None when nobody does (a stranger
        to the labels, a vehicle, a false detection, or a track that switched people halfway)."""
        compared = 0
        hits: dict[str, int] = {}
        for frame, box in track_boxes.items():
            here = self.boxes_at(frame)
            if not here:
                continue
            compared += 1
            best_label, best = max(((label, iou(box, b)) for label, b in here), key=lambda lb: lb[1])
            if best >= min_iou:
                hits[best_label] = hits.get(best_label, 0) + 1
        if not hits:
            return None
        label, count = max(hits.items(), key=lambda item: item[1])
        return label if count * 2 > compared else None

    def label_of_times(self, track_boxes: Mapping[float, Box], min_iou: float = MATCH_IOU) -> str | None:
        """label_of for a track keyed by stream time (pts seconds), as the daemon's frames carry it."""
        return self.label_of({self.frame_of(t): box for t, box in track_boxes.items()}, min_iou)


def load_truth(name: str | Path) -> Truth:
    """A truth by name ('vtest', 'hamilton': camd/eval/truth/<name>.json) or by path."""
    path = Path(name) if str(name).endswith(".json") else TRUTH_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in TRUTH_DIR.glob("*.json"))
        raise TruthError(f"no truth file {path} (known: {known})")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TruthError(f"{path}: not valid JSON: {exc}") from exc
    try:
        if raw["version"] != TRUTH_VERSION:
            raise TruthError(f"{path}: version {raw['version']}, this camd reads version {TRUTH_VERSION}")
        every = int(raw["sample_every"])
        people = tuple(
            Person(
                label=p["label"],
                description=p["description"],
                upper=p["upper"],
                lower=p["lower"],
                uncertain=bool(p["uncertain"]),
                maybe_same_as=tuple(p.get("maybe_same_as", ())),
                passages=tuple(
                    Passage(
                        p["label"],
                        tuple(Sample(int(s["frame"]), float(s["t"]), tuple(map(float, s["box"])),  # type: ignore[arg-type]
                                     bool(s.get("cut", False)))
                              for s in passage["boxes"]),
                        max_gap=MAX_GAP_STEPS * every,
                    )
                    for passage in p["passages"]
                ),
            )
            for p in raw["people"]
        )
        truth = Truth(
            name=raw["name"], clip=raw["clip"], width=int(raw["width"]), height=int(raw["height"]),
            fps=float(raw["fps"]), frames=int(raw["frames"]), sample_every=every, people=people,
            pts_offset=float(raw["pts_offset"]),
            irregular={int(frame): float(t) for frame, t in raw["irregular_times"]},
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, TruthError):
            raise
        raise TruthError(f"{path}: malformed truth ({type(exc).__name__}: {exc})") from exc
    labels = [person.label for person in truth.people]
    if len(set(labels)) != len(labels):
        raise TruthError(f"{path}: a label is given to two people: {sorted(labels)}")
    for person in truth.people:
        ends = [(q.first_frame, q.last_frame) for q in person.passages]
        if ends != sorted(ends) or any(a[1] >= b[0] for a, b in itertools.pairwise(ends)):
            raise TruthError(f"{path}: {person.label}: passages overlap or are out of order")
        for passage in person.passages:
            frames = [s.frame for s in passage.samples]
            if not frames or frames != sorted(set(frames)):
                raise TruthError(f"{path}: {person.label}: a passage's frames are empty or out of order")
    return truth
