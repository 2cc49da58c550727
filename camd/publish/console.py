"""Events printed readably on a terminal: one line per event (the demo, `camd events`, logs)."""

from __future__ import annotations

import time

from rich.console import Console

from camd.types import EventKind, TrackEvent, TrackSnapshot

STYLE = {EventKind.NEW: "bold green", EventKind.UPDATE: "cyan", EventKind.END: "magenta"}
CLASS_STYLE = {"family": "green", "visitor": "yellow", "stranger": "bold red", "known_vehicle": "green"}


def who(track: TrackSnapshot) -> str:
    """The identity part of a line: who it is, or that it is not decided yet."""
    identity = track.identity
    if identity.identity_class is None:
        return "identity pending"
    name = identity.name or identity.global_id or "unknown"
    suffix = f" {identity.confidence:.2f}" if identity.confidence is not None else ""
    return f"{identity.identity_class}: {name}{suffix}"


def format_event(event: TrackEvent) -> str:
    after = event.after
    clock = time.strftime("%H:%M:%S", time.localtime(after.frame_time))
    kind = event.kind
    line = (
        f"{clock} {after.camera:<12} [{STYLE.get(kind, '')}]{kind.upper():<6}[/] "
        f"{after.label:<10} #{after.track_id:<4} score {round(after.top_score, 4):.2f}  {who(after)}"
    )
    if kind is EventKind.END and after.end_time is not None:
        line += f"  ({after.end_time - after.start_time:.1f}s, {after.frames} frames)"
    return line


class ConsoleSink:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)

    def __call__(self, event: TrackEvent) -> None:
        self.console.print(format_event(event), soft_wrap=True)
