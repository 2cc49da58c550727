"""Events printed readably on a terminal.

Two readers: `camd events` follows every event on MQTT, one line each (`ConsoleSink`); `camd demo` shows
decisions, not noise (`DecisionConsole`): one line when a track is decided (who, class, how sure and the
evidence that decided it), the `new` / `update` / `end` stream only with --verbose, and at the end a table
of who was seen, on which camera, when and how sure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from camd.types import PERSON, EventKind, Evidence, Identity, TrackEvent, TrackSnapshot, kind_of

STYLE = {EventKind.NEW: "bold green", EventKind.UPDATE: "cyan", EventKind.END: "magenta"}
CLASS_STYLE = {
    "family": "bold green", "visitor": "bold yellow", "stranger": "bold red",
    "known_vehicle": "green", "unknown_vehicle": "red",
}  # fmt: skip
NAMED_CLASSES = ("family", "visitor", "known_vehicle")
# What the matcher calls `gait` is the body shape measured from the poses over the track.
MODALITY_WORDS = {"face": "face", "body": "body", "gait": "shape"}
# Summary rows: named people first, then returning strangers, then everything seen once.
ROW_ORDER = {"family": 0, "visitor": 1, "known_vehicle": 2, "stranger": 3, "unknown_vehicle": 4}

# How a time is shown: (camera, wall-clock seconds) -> text. The demo shows a clip's own time.
Clock = Callable[[str, float], str]


def wall_clock(_camera: str, at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def who(track: TrackSnapshot) -> str:
    """The identity part of a `camd events` line: who it is, or that it is not decided yet."""
    identity = track.identity
    if identity.identity_class is None:
        return "identity pending"
    name = identity.name or identity.global_id or "unknown"
    suffix = f" {identity.confidence:.2f}" if identity.confidence is not None else ""
    return f"{identity.identity_class}: {name}{suffix}"


def format_event(event: TrackEvent, clock: Clock = wall_clock) -> str:
    after = event.after
    kind = event.kind
    line = (
        f"{clock(after.camera, after.frame_time)} {after.camera:<12} "
        f"[{STYLE.get(kind, '')}]{kind.upper():<6}[/] {after.label:<10} #{after.track_id:<4} "
        f"score {round(after.top_score, 4):.2f}  {who(after)}"
    )
    if kind is EventKind.END and after.end_time is not None:
        line += f"  ({after.end_time - after.start_time:.1f}s, {after.frames} frames)"
    return line


class ConsoleSink:
    """Every event, one line each (`camd events`)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)

    def __call__(self, event: TrackEvent) -> None:
        self.console.print(format_event(event), soft_wrap=True)


# -- decisions ----------------------------------------------------------------------------------------


def decided(identity: Identity) -> bool:
    """A class given, or a reason why none will be (a sign that does not look like a person)."""
    return identity.identity_class is not None or identity.evidence.reason is not None


def deciding_modality(identity: Identity, kind: str) -> str | None:
    """The evidence a name rests on: a face that passed decides; otherwise the body's (or a vehicle's)
    appearance. Body shape only nudges the body's odds (camd/identity/matcher.py), it never decides."""
    evidence = identity.evidence
    if evidence.face is not None and evidence.face >= 0.5:
        return "face"
    if evidence.body is not None:
        return "look" if kind != PERSON else "body"
    return None


def evidence_text(evidence: Evidence, kind: str, first: str | None = None) -> str:
    """'face 0.86, body 0.47, shape 0.60': the modalities that had something, `first` leading."""
    parts = []
    for modality in _modality_order(first):
        value = evidence[modality]
        if value is not None:
            word = "look" if modality == "body" and kind != PERSON else MODALITY_WORDS[modality]
            parts.append(f"{word} {value:.2f}")
    return ", ".join(parts)


def _modality_order(first: str | None) -> list[str]:
    order = ["face", "body", "gait"]
    key = "body" if first == "look" else first
    if key in order:
        order.remove(key)
        order.insert(0, key)
    return order


@dataclass
class Sighting:
    """One finished track as the console recorded it (its final decision), for the summary table."""

    camera: str
    track_id: int
    label: str
    identity: Identity
    start: float
    end: float


@dataclass
class DecisionConsole:
    """The demo's event sink: a line per decided track (and per revised decision); --verbose adds every
    event. `known_ids`: stranger / vehicle ids the memory already had before this run (so a link to one
    of them reads "again", not "new")."""

    console: Console = field(default_factory=lambda: Console(highlight=False))
    verbose: bool = False
    clock: Clock = wall_clock
    known_ids: set[str] = field(default_factory=set)
    sightings: list[Sighting] = field(default_factory=list)
    _printed: dict[tuple[str, int], Identity] = field(default_factory=dict)  # each open track's line
    _first_seen: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> (camera, when)

    def __call__(self, event: TrackEvent) -> None:
        after = event.after
        if self.verbose:
            self.console.print(format_event(event, self.clock), soft_wrap=True)
        key = (after.camera, after.track_id)
        identity = after.identity
        if event.kind is EventKind.END:
            self.sightings.append(
                Sighting(after.camera, after.track_id, after.label, identity, after.start_time,
                         after.end_time if after.end_time is not None else after.frame_time)
            )  # fmt: skip
        if not decided(identity) and event.kind is not EventKind.END:
            return
        printed = self._printed.get(key)
        if printed is not None and _same_decision(printed, identity):
            return
        self.console.print(self.decision_line(after, revised=printed), soft_wrap=True)
        self._printed[key] = identity
        if identity.global_id is not None:
            self._first_seen.setdefault(identity.global_id, (after.camera, after.start_time))
        if event.kind is EventKind.END:
            del self._printed[key]  # a camera's track ids are not reused, but the dict must not grow

    def decision_line(self, track: TrackSnapshot, revised: Identity | None = None) -> str:
        identity = track.identity
        at = track.end_time if track.end_time is not None else track.frame_time  # an end: when last seen
        head = f"{self.clock(track.camera, at)} {track.camera:<8} {track.label:<7} #{track.track_id:<4}"
        cls = identity.identity_class
        if cls is None:
            why = identity.evidence.reason or "nothing to decide on (no face, body or shape seen well enough)"
            return f"{head} [dim]{'not named':<15} {why}[/]"
        name = identity.name or identity.global_id or "?"
        sure = f"{identity.confidence:.2f}" if identity.confidence is not None else "  - "
        style = CLASS_STYLE.get(cls, "")
        line = f"{head} [{style}]{cls:<15}[/] [bold]{name:<20}[/] {sure}  {self._why(track)}"
        if revised is not None and revised.identity_class is not None:
            before = revised.name or revised.global_id or revised.identity_class
            line += f"  [yellow](revised: was {before})[/]"
        return line

    def _why(self, track: TrackSnapshot) -> str:
        identity = track.identity
        kind = kind_of(track.label)
        evidence = identity.evidence
        if identity.identity_class in NAMED_CLASSES:
            by = deciding_modality(identity, kind)
            text = evidence_text(evidence, kind, by)
            if not text:
                return "no evidence recorded"
            rest = text.split(", ", 1)
            return f"by {rest[0]}" + (f" ({rest[1]})" if len(rest) > 1 else "")
        gid = identity.global_id
        seen = self._first_seen.get(gid) if gid is not None else None
        if gid is not None and (seen is not None or gid in self.known_ids):
            by = deciding_modality(identity, kind)
            where = f" at {self.clock(*seen)} on {seen[0]}" if seen is not None else " before this run"
            link = evidence_text(evidence, kind, by).split(", ", 1)[0] if by else "its place"
            return f"seen again: {link} links it to its sighting{where}"
        closest = evidence_text(evidence, kind)
        if kind != PERSON:
            return "new: like no vehicle seen before"
        return "new: nobody enrolled matches" + (f" (closest {closest})" if closest else "")

    # -- the summary ------------------------------------------------------------------------------

    def summary_table(self) -> Table:
        return summary_table(self.sightings, self.clock)


def _same_decision(a: Identity, b: Identity) -> bool:
    return (a.identity_class, a.name, a.global_id) == (b.identity_class, b.name, b.global_id)


def summary_table(sightings: Iterable[Sighting], clock: Clock = wall_clock) -> Table:
    """Who was seen, on which camera, when, how sure: one row per identity; strangers and vehicles seen
    only once share a row, and so do tracks left unnamed."""
    groups: dict[str, list[Sighting]] = {}
    once: dict[str, list[Sighting]] = {}
    unnamed: list[Sighting] = []
    for s in sightings:
        key = s.identity.name or s.identity.global_id
        if s.identity.identity_class is None or key is None:
            unnamed.append(s)
        else:
            groups.setdefault(key, []).append(s)
    for key in [k for k, rows in groups.items() if len(rows) == 1 and rows[0].identity.name is None]:
        s = groups.pop(key)[0]
        once.setdefault(str(s.identity.identity_class), []).append(s)

    table = Table(title="who was seen", title_justify="left", show_lines=False)
    for column in ("who", "class", "camera", "when", "seen", "how sure", "decided by"):
        table.add_column(column, justify="right" if column in ("seen", "how sure") else "left")
    for key, rows in sorted(groups.items(), key=lambda kv: _row_rank(kv[1], kv[0])):
        cls = str(rows[0].identity.identity_class)
        table.add_row(
            key, f"[{CLASS_STYLE.get(cls, '')}]{cls}[/]", _cameras(rows), _spans(rows, clock), str(len(rows)),
            _sure(rows), _deciders(rows),
        )  # fmt: skip
    for cls, rows in sorted(once.items(), key=lambda kv: ROW_ORDER.get(kv[0], 9)):
        stranger = cls == "stranger"
        what, why = ("stranger", "no enrolled match") if stranger else ("vehicle", "no known match")
        what += "s" if len(rows) > 1 else ""
        table.add_row(
            f"{len(rows)} {what} seen once", f"[{CLASS_STYLE.get(cls, '')}]{cls}[/]", _cameras(rows),
            _range(rows, clock), str(len(rows)), _sure(rows), why,
        )  # fmt: skip
    if unnamed:
        table.add_row(
            "[dim]not named[/]", "[dim]-[/]", _cameras(unnamed), _range(unnamed, clock), str(len(unnamed)),
            "-", "[dim]" + _reasons(unnamed) + "[/]",
        )  # fmt: skip
    return table


def _row_rank(rows: list[Sighting], key: str) -> tuple[int, float, str]:
    return ROW_ORDER.get(str(rows[0].identity.identity_class), 9), min(s.start for s in rows), key


def _cameras(rows: list[Sighting]) -> str:
    return ", ".join(dict.fromkeys(s.camera for s in rows))


def _spans(rows: list[Sighting], clock: Clock, most: int = 2) -> str:
    rows = sorted(rows, key=lambda s: (s.camera, s.start))
    several = len({s.camera for s in rows}) > 1
    spans = [f"{s.camera + ' ' if several else ''}{clock(s.camera, s.start)}-{clock(s.camera, s.end)}"
             for s in rows]  # fmt: skip
    return ", ".join(spans[:most]) + (f" (+{len(spans) - most})" if len(spans) > most else "")


def _range(rows: list[Sighting], clock: Clock) -> str:
    parts = []
    for camera in dict.fromkeys(s.camera for s in rows):
        mine = [s for s in rows if s.camera == camera]
        parts.append(f"{clock(camera, min(s.start for s in mine))}-{clock(camera, max(s.end for s in mine))}")
    return ", ".join(parts)


def _sure(rows: list[Sighting]) -> str:
    values = [s.identity.confidence for s in rows if s.identity.confidence is not None]
    if not values:
        return "-"
    low, high = min(values), max(values)
    return f"{low:.2f}" if round(low, 2) == round(high, 2) else f"{low:.2f}-{high:.2f}"


def _deciders(rows: list[Sighting]) -> str:
    """'face x2'; for a returning stranger 'new, body link x2' (a later sighting carries the evidence
    that linked it to the first)."""
    first = min(rows, key=lambda s: s.start)
    counts: dict[str, int] = {}
    for s in sorted(rows, key=lambda s: s.start):
        by = deciding_modality(s.identity, kind_of(s.label))
        if s.identity.identity_class not in NAMED_CLASSES:
            by = "new" if s is first or by is None else f"{by} link"
        counts[by or "-"] = counts.get(by or "-", 0) + 1
    return ", ".join(f"{by} x{n}" if n > 1 else by for by, n in counts.items())


def _reasons(rows: list[Sighting]) -> str:
    short = [(s.identity.evidence.reason or "nothing to decide on").split(":", 1)[0] for s in rows]
    counts: dict[str, int] = {}
    for reason in short:
        counts[reason] = counts.get(reason, 0) + 1
    return ", ".join(f"{r} x{n}" if n > 1 else r for r, n in counts.items())
