"""Times in plain words: `--since yesterday`, `--between "14:00" "16:00"`, `--last 2h`, `--day monday`.

Words are read by dateparser (English), in the machine's local time, preferring the past: a bare
"14:00" before 14:00 today means yesterday's. A day without a time ("yesterday", "monday",
"2026-12-01") means that day's start when it opens a range and its end when it closes one; "3 days
ago" keeps the time of day. Durations (`--last`) are read here: "2h", "90 min", "1h30m", "3 days".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

EXAMPLES = '"yesterday", "14:00", "monday 08:00", "2026-12-01", "3 days ago"'
DURATION_EXAMPLES = '"2h", "90m", "1h30m", "3 days"'


class TimeExpressionError(ValueError):
    """A time or duration that cannot be read; the message says what would be."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[after, before] in epoch seconds; None: open on that side."""

    after: float | None = None
    before: float | None = None

    def contains(self, t: float) -> bool:
        return (self.after is None or t >= self.after) and (self.before is None or t <= self.before)

    def as_dict(self) -> dict[str, float | None]:
        return {"after": self.after, "before": self.before}


_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")


def parse_duration(text: str) -> float:
    """Seconds in "2h", "90 min", "1h30m", "1.5 days"; TimeExpressionError otherwise."""
    cleaned = text.strip().lower().replace(",", " ").replace(" and ", " ")
    total, position = 0.0, 0
    for match in _PART.finditer(cleaned):
        if match.start() != position or match.group(2) not in _UNITS:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    else:
        if position == len(cleaned) and total > 0:
            return total
    raise TimeExpressionError(f"cannot read {text!r} as a duration: try {DURATION_EXAMPLES}")


def _parser(now: datetime) -> Any:
    from dateparser.date import DateDataParser

    return DateDataParser(
        languages=["en"],
        settings={"RETURN_TIME_AS_PERIOD": True, "PREFER_DATES_FROM": "past", "RELATIVE_BASE": now},
    )


def parse_time(text: str, now: datetime | None = None, end_of_day: bool = False) -> tuple[float, bool]:
    """(epoch seconds, whether the text gave a time of day). A day without a time gives its start
    (its end with `end_of_day`). TimeExpressionError for words that are no time."""
    now = now or datetime.now()
    words = text.strip()
    if not words:
        raise TimeExpressionError(f"an empty time: try {EXAMPLES}")
    try:
        found = _parser(now).get_date_data(words)
    except (ValueError, OverflowError):
        found = None
    if found is None or found.date_obj is None:
        raise TimeExpressionError(f"cannot read {text!r} as a time: try {EXAMPLES}")
    moment: datetime = found.date_obj
    if moment.tzinfo is not None:  # "14:00 UTC": to local time, as every other answer here
        moment = moment.astimezone().replace(tzinfo=None)
    has_time = found.period == "time" or "ago" in words.lower()
    if not has_time:
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        moment = start + timedelta(days=1) - timedelta(microseconds=1) if end_of_day else start
    return moment.timestamp(), has_time


def time_range(
    since: str | None = None,
    until: str | None = None,
    between: tuple[str, str] | list[str] | None = None,
    last: str | None = None,
    now: datetime | None = None,
) -> TimeRange:
    """The range the options describe (at most one of since/between/last, `until` with `since`)."""
    given = [name for name, value in (("since", since), ("between", between), ("last", last)) if value]
    if len(given) > 1:
        raise TimeExpressionError(f"give one of --since, --between, --last (got {', '.join(given)})")
    now = now or datetime.now()
    if last:
        return TimeRange(after=now.timestamp() - parse_duration(last), before=None)
    if between:
        if len(between) != 2:
            raise TimeExpressionError('--between takes two times, e.g. --between "14:00" "16:00"')
        start, _ = parse_time(between[0], now)
        end, end_has_time = parse_time(between[1], now, end_of_day=True)
        while end < start and end_has_time:  # "22:00" "02:00": the end is the next day's
            end += 86400.0
        if end < start:
            raise TimeExpressionError(f"--between {between[0]!r} {between[1]!r}: the end is before the start")
        return TimeRange(start, end)
    after = parse_time(since, now)[0] if since else None
    before = parse_time(until, now, end_of_day=True)[0] if until else None
    if after is not None and before is not None and before < after:
        raise TimeExpressionError(f"--until {until!r} is before --since {since!r}")
    return TimeRange(after, before)


def day_range(day: str | None, now: datetime | None = None) -> tuple[TimeRange, str]:
    """The whole local day `day` names (None: today), and its date as YYYY-MM-DD."""
    now = now or datetime.now()
    moment = datetime.fromtimestamp(parse_time(day, now)[0]) if day else now
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)
    return TimeRange(start.timestamp(), end.timestamp() - 1e-3), start.date().isoformat()
