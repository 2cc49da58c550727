"""`camd search|visits|digest`: ask the memory what it saw (camd/history).

Like the people commands, they open the memory directly, or go through the running daemon's control
API when it holds the store. Times are read here, in the user's local time, and sent as epoch seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from camd.cli.people import _run, _store_args


def register(sub: Any) -> None:
    search = sub.add_parser(
        "search", help="find sightings by who, class, camera, time, clothing colour, or like another one"
    )
    search.add_argument("--person", help="a name, or a stranger's unknown-N / vehicle-N")
    search.add_argument(
        "--class",
        dest="classes",
        action="append",
        default=[],
        metavar="CLASS",
        help="family, visitor, stranger, known (vehicle), unknown (vehicle), vehicle; repeatable",
    )
    search.add_argument("--camera")
    search.add_argument(
        "--wearing",
        action="append",
        default=[],
        metavar="CLOTHES",
        help='a colour and a garment: "red top", "black trousers", "blue jeans"',
    )
    search.add_argument(
        "--top", help="upper-body colour: red, brown, yellow, green, blue, purple, black, grey, white"
    )
    search.add_argument("--bottom", help="lower-body colour (as --top)")
    search.add_argument(
        "--like", metavar="SIGHTING", help="rank by likeness to this sighting, on every camera"
    )
    search.add_argument("--limit", type=int, default=50)
    search.add_argument(
        "--html", type=Path, default=None, help="also write a contact sheet of the crops here"
    )
    _time_args(search)
    _store_args(search)
    search.set_defaults(func=cmd_search)

    visits = sub.add_parser("visits", help="visits: one identity's sightings on any camera within a gap")
    visits.add_argument("--person", help="a name, or a stranger's unknown-N / vehicle-N")
    visits.add_argument("--class", dest="classes", action="append", default=[], metavar="CLASS")
    visits.add_argument("--camera", help="visits that passed this camera")
    visits.add_argument(
        "--gap",
        type=float,
        default=None,
        metavar="SECONDS",
        help="join sightings this close (default: history.visit_gap_s, 600)",
    )
    visits.add_argument("--limit", type=int, default=200)
    _time_args(visits)
    _store_args(visits)
    visits.set_defaults(func=cmd_visits)

    digest = sub.add_parser("digest", help="one day in a few lines: family, visitors, strangers, vehicles")
    digest.add_argument("--day", default=None, help='"today" (default), "yesterday", "monday", 2026-12-01')
    _store_args(digest)
    digest.set_defaults(func=cmd_digest)


def _time_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help='from: "yesterday", "08:00", "monday", "3 days ago", 2026-12-01')
    parser.add_argument("--until", help="to (with --since)")
    parser.add_argument("--between", nargs=2, metavar=("FROM", "TO"), help='e.g. --between "14:00" "16:00"')
    parser.add_argument("--last", help='the last "2h", "30 min", "1h30m", "3 days"')


def _span(args: argparse.Namespace) -> tuple[float | None, float | None]:
    from camd.history.when import time_range

    span = time_range(since=args.since, until=args.until, between=args.between, last=args.last)
    return span.after, span.before


def cmd_search(args: argparse.Namespace) -> int:
    from camd.history.search import SearchQuery

    def params() -> dict[str, Any]:
        after, before = _span(args)
        return {"person": args.person, "classes": args.classes, "camera": args.camera, "after": after,
                "before": before, "wearing": args.wearing, "upper": args.top, "lower": args.bottom,
                "like": args.like, "limit": args.limit}  # fmt: skip

    def action(service: Any) -> Any:
        from camd.history.queries import search_sightings

        return _sheet(
            search_sightings(service, SearchQuery.build(**params()), with_crops=args.html is not None)
        )

    def through_api(client: Any) -> Any:
        return _sheet(client.search({**params(), "class": args.classes, "classes": None,
                                     "crops": args.html is not None}))  # fmt: skip

    def _sheet(answer: dict[str, Any]) -> dict[str, Any]:
        if args.html is not None:
            from camd.history.sheet import write_sheet

            answer["html"] = str(write_sheet(answer, args.html))
            for row in answer["results"]:
                row.pop("crop_jpeg", None)  # in the sheet; not in the JSON or the table
        return answer

    def show(answer: dict[str, Any]) -> None:
        rows = answer["results"]
        if not rows:
            print("no sightings match")
        for row in rows:
            print(_row_line(row))
        ranked = " (best first)" if rows and "score" in rows[0] else ""
        print(f"{len(rows)} sighting(s){ranked}, {answer['took_ms']} ms", file=sys.stderr)
        if answer.get("html"):
            print(f"contact sheet: {answer['html']}", file=sys.stderr)

    return _run(args, action, show, through_api)


def _row_line(row: dict[str, Any]) -> str:
    confidence = row.get("confidence")
    sure = f"{confidence:.2f}" if isinstance(confidence, int | float) else "  - "
    wore = row.get("wore") or {}
    clothes = "/".join(",".join(str(n) for n, _ in wore.get(p) or []) or "?" for p in ("upper", "lower"))
    score = f" score {row['score']:.3f}" if isinstance(row.get("score"), int | float) else ""
    cls = (row.get("identity_class") or "undecided").replace("_", " ")
    return (f"{row.get('time') or '?':<19}  {row.get('camera') or '?':<12} {row.get('who') or '-':<16} "
            f"{cls:<15} {sure}  {row.get('label') or '':<7} {clothes if wore else '':<22} "
            f"{row.get('sighting_id')}{score}")  # fmt: skip


def cmd_visits(args: argparse.Namespace) -> int:
    def params() -> dict[str, Any]:
        after, before = _span(args)
        return {"person": args.person, "classes": args.classes, "camera": args.camera, "after": after,
                "before": before, "gap_s": args.gap, "limit": args.limit}  # fmt: skip

    def action(service: Any) -> Any:
        from camd.history.queries import list_visits_for

        return list_visits_for(service, params())

    def through_api(client: Any) -> Any:
        query = params()
        return client.visits({**query, "class": query.pop("classes"), "gap": query.pop("gap_s")})

    def show(answer: dict[str, Any]) -> None:
        from camd.history.search import local_time

        if not answer["visits"]:
            print("no visits")
        for visit in answer["visits"]:
            who = visit.get("name") or visit["person_id"]
            cls = (visit.get("identity_class") or "undecided").replace("_", " ")
            state = "" if visit.get("ended") else "  (still here)"
            print(f"{local_time(visit['start_time'])}  {who:<16} {cls:<15} "
                  f"arrived at {visit['arrival_camera']}, "
                  f"left {local_time(visit['end_time'])[11:]} from {visit['departure_camera']} "
                  f"after {_minutes(visit['duration_s'])}; passed {' > '.join(visit['cameras'])} "
                  f"({len(visit['sightings'])} sighting(s)){state}")  # fmt: skip
        print(f"{len(answer['visits'])} visit(s), gap {answer['gap_s']:g} s", file=sys.stderr)

    return _run(args, action, show, through_api)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def cmd_digest(args: argparse.Namespace) -> int:
    def action(service: Any) -> Any:
        from camd.history.queries import day_digest

        return day_digest(service, args.day)

    def show(answer: dict[str, Any]) -> None:
        print("\n".join(answer["lines"]))

    return _run(args, action, show, lambda client: client.digest(args.day))
