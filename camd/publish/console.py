"""Events printed readably on a terminal: one line per event (the demo, `camd events`, logs)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

STYLE = {"new": "bold green", "update": "cyan", "end": "magenta"}
CLASS_STYLE = {"family": "green", "visitor": "yellow", "stranger": "bold red", "known_vehicle": "green"}


def who(after: dict[str, Any]) -> str:
    """The identity part of a line: who it is, or that it is not decided yet."""
    if after.get("identity_class") is None:
        return "identity pending"
    name = after.get("identity") or after.get("global_id") or "unknown"
    confidence = after.get("confidence")
    suffix = f" {confidence:.2f}" if isinstance(confidence, int | float) else ""
    return f"{after['identity_class']}: {name}{suffix}"


def format_event(event: dict[str, Any]) -> str:
    after = event["after"]
    clock = time.strftime("%H:%M:%S", time.localtime(after["frame_time"]))
    kind = event["type"]
    line = (
        f"{clock} {after['camera']:<12} [{STYLE.get(kind, '')}]{kind.upper():<6}[/] "
        f"{after['label']:<10} #{after.get('track_id', '?'):<4} score {after['top_score']:.2f}  {who(after)}"
    )
    if kind == "end" and after.get("end_time") is not None:
        line += f"  ({after['end_time'] - after['start_time']:.1f}s, {after.get('frames', 0)} frames)"
    return line


class ConsoleSink:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)

    def __call__(self, event: dict[str, Any]) -> None:
        self.console.print(format_event(event), soft_wrap=True)
