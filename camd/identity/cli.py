"""`camd enroll|people|correct|forget|eval`: thin argument parsing around camd.identity.enroll.

These commands open the memory directly. While the daemon runs, its embedded store is locked and the
commands say so (going through the daemon is the control API's job).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXIT_ERROR = 1
EXIT_CHOOSE_TRACK = 3


def register(sub: Any) -> None:
    """Add the identity subcommands to camd's argparse subparsers."""
    enroll = sub.add_parser("enroll", help="teach camd a person or vehicle from photos, a clip or a sighting")
    enroll.add_argument("name")
    enroll.add_argument("--role", choices=["family", "visitor"], default="family")
    source = enroll.add_mutually_exclusive_group(required=True)
    source.add_argument("--photos", type=Path, help="a folder of photos (or one photo) of this person")
    source.add_argument("--clip", type=Path, help="a video clip in which this person appears")
    source.add_argument("--sighting", help="a sighting id camd recorded (the event id)")
    enroll.add_argument("--track", type=int, default=None, help="with --clip: the track to enroll")
    enroll.add_argument("--start", type=float, default=0.0, help="with --clip: start at this second")
    enroll.add_argument("--end", type=float, default=None, help="with --clip: stop at this second")
    enroll.add_argument("--vehicle", action="store_true", help="enroll a vehicle, not a person")
    _store_args(enroll)
    enroll.set_defaults(func=cmd_enroll)

    people = sub.add_parser("people", help="list, show, rename or remove enrolled people and vehicles")
    people.add_argument("action", choices=["list", "show", "rename", "remove"])
    people.add_argument("names", nargs="*", help="show NAME | rename OLD NEW | remove NAME")
    people.add_argument("--strangers", action="store_true", help="list: include unknown-N strangers")
    _store_args(people)
    people.set_defaults(func=cmd_people)

    correct = sub.add_parser("correct", help="say who a sighting was (or was not)")
    correct.add_argument("sighting")
    which = correct.add_mutually_exclusive_group(required=True)
    which.add_argument("--is", dest="is_name", help="the sighting was NAME")
    which.add_argument("--not", dest="not_name", help="the sighting was not NAME")
    _store_args(correct)
    correct.set_defaults(func=cmd_correct)

    forget = sub.add_parser("forget", help="remove a person and every vector and crop of them")
    forget.add_argument("name")
    _store_args(forget)
    forget.set_defaults(func=cmd_forget)

    evaluate = sub.add_parser("eval", help="identity figures on ../shared/data (faces, body re-ID, timings)")
    evaluate.add_argument("--data", type=Path, default=None, help="the shared data folder")
    evaluate.add_argument("--models-dir", default="var/models")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=cmd_eval)


def _store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default=None, help="the daemon's YAML config (finds the store)")
    parser.add_argument("--state-dir", default="var", help="without --config: where the store lives")
    parser.add_argument("--models-dir", default=None, help="without --config: default <state-dir>/models")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _config(args: argparse.Namespace) -> Any:
    from camd.config.loader import load_config
    from camd.config.models import Config

    if args.config:
        return load_config(args.config)
    # The store and models need no camera; the schema wants one, so a placeholder fills the slot.
    return Config.model_validate({
        "state_dir": args.state_dir, "models_dir": args.models_dir,
        "cameras": {"cli": {"url": "unused.mp4", "enabled": False}},
    })  # fmt: skip


@contextmanager
def _service(args: argparse.Namespace) -> Iterator[Any]:
    from camd.identity.service import IdentityService

    service = IdentityService(_config(args), load_models=False)  # loaded on first use: enroll only
    try:
        yield service
    finally:
        service.close()


ApiAction = Callable[[Any], Any]


def _through_daemon(args: argparse.Namespace, api_action: ApiAction | None, locked: Exception) -> Any:
    """The running daemon holds the store: send the call to its control API instead."""
    from camd.api.auth import TokenError
    from camd.api.client import ApiClient, ApiUnavailable

    if api_action is None:
        raise ValueError(f"{locked}. This command works only with the daemon stopped.")
    config = _config(args)
    try:
        return api_action(ApiClient.for_state_dir(config.state_dir, config.api))
    except (TokenError, ApiUnavailable) as exc:
        raise ValueError(f"{locked}; its control API did not answer either: {exc}") from exc


def _run(
    args: argparse.Namespace,
    action: Callable[[Any], Any],
    show: Callable[[Any], None],
    api_action: ApiAction | None = None,
) -> int:
    from camd.api.auth import TokenError
    from camd.api.client import ApiError
    from camd.config.loader import ConfigError
    from camd.identity.enroll import EnrollmentError, TrackChoiceNeeded
    from camd.identity.memory import MemoryLockedError, UnknownPersonError

    try:
        try:
            with _service(args) as service:
                result = action(service)
        except MemoryLockedError as locked:
            result = _through_daemon(args, api_action, locked)
    except (ApiError, TokenError) as exc:
        print(f"error: through the running daemon: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except TrackChoiceNeeded as exc:
        print(f"error: {exc}", file=sys.stderr)
        for row in exc.tracks:
            print(f"  --track {row['track']:<4} {row['frames']:>4} frames, {row['faces']} face(s), "
                  f"first at {row['first_seen_s']} s, crop {row['crop']}", file=sys.stderr)  # fmt: skip
        return EXIT_CHOOSE_TRACK
    except (ConfigError, EnrollmentError, UnknownPersonError, MemoryLockedError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        show(result)
    return 0


@contextmanager
def _bar(description: str) -> Iterator[Callable[[int, int], None]]:
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def cmd_enroll(args: argparse.Namespace) -> int:
    from camd.identity import enroll

    kind = "vehicle" if args.vehicle else "person"

    def action(service: Any) -> Any:
        if args.photos is not None:
            with _bar(f"photos of {args.name}") as progress:
                return enroll.enroll_photos(service, args.name, args.role, args.photos, kind, progress)
        if args.clip is not None:
            with _bar(f"{args.clip.name}") as progress:
                return enroll.enroll_clip(
                    service, args.name, args.role, args.clip, args.track, kind, args.start, args.end,
                    progress=progress,
                )  # fmt: skip
        return enroll.enroll_sighting(service, args.name, args.role, args.sighting)

    def through_api(client: Any) -> Any:
        if args.photos is None or args.vehicle:
            raise ValueError("the daemon is running: only enrolling a person from --photos goes through it; "
                             "stop the daemon to enroll from a clip, a sighting or a vehicle")
        photos = sorted(p for p in args.photos.iterdir()) if args.photos.is_dir() else [args.photos]
        return client.enroll_photos(args.name, photos, args.role)

    def show(result: dict[str, Any]) -> None:
        added = ", ".join(f"{k} {v}" for k, v in result["added"].items() if v)
        print(f"enrolled {result['name']} ({result['role']} {result['kind']}): {added or 'nothing new'}")
        for row in result.get("skipped", []):
            print(f"  skipped {row['photo']}: {row['reason']}")

    return _run(args, action, show, through_api)


def cmd_people(args: argparse.Namespace) -> int:
    from camd.identity import enroll

    wanted = {"list": 0, "show": 1, "rename": 2, "remove": 1}[args.action]
    if len(args.names) != wanted:
        usage = {"list": "people list", "show": "people show NAME", "rename": "people rename OLD NEW",
                 "remove": "people remove NAME"}[args.action]  # fmt: skip
        print(f"error: usage: camd {usage}", file=sys.stderr)
        return 2

    def action(service: Any) -> Any:
        if args.action == "list":
            return enroll.people_list(service, args.strangers)
        if args.action == "show":
            return enroll.person_show(service, args.names[0])
        if args.action == "rename":
            return enroll.rename(service, *args.names)
        return enroll.forget(service, args.names[0])

    def through_api(client: Any) -> Any:
        if args.action == "list":
            return client.list_people()["people"]
        if args.action == "show":
            return client.show_person(args.names[0])
        if args.action == "rename":
            return client.rename(*args.names)
        return client.remove(args.names[0])

    def show(result: Any) -> None:
        if args.action == "list":
            if not result:
                print("nobody enrolled yet: camd enroll NAME --photos DIR")
            for p in result:
                protos = ", ".join(f"{k} {v}" for k, v in sorted(p["prototypes"].items()))
                seen = p.get("seen_count", 0)
                print(f"{p['name']:<20} {p['role']:<8} {p['kind']:<8} seen {seen:>4}  {protos}")
        elif args.action == "show":
            print(json.dumps(result, indent=1, default=str))
        elif args.action == "rename":
            print(f"renamed to {result['name']}")
        else:
            print(f"removed {result['forgotten']}: {result['prototypes']} prototypes, "
                  f"{result['sightings']} sightings, {result['crops']} crops")  # fmt: skip

    return _run(args, action, show, through_api)


def cmd_correct(args: argparse.Namespace) -> int:
    from camd.identity import enroll

    def show(result: dict[str, Any]) -> None:
        if "is" in result:
            print(f"sighting {result['sighting']} is {result['is']}: learned from it")
        else:
            print(f"sighting {result['sighting']} is not {result['not']}: kept as negative evidence")

    def through_api(client: Any) -> Any:
        if args.not_name is not None:
            # The API's "not" means "not who it was matched to": check that this is NAME.
            mine = client.sightings(person=args.not_name, limit=10_000)["sightings"]
            if args.sighting not in {row.get("sighting_id") for row in mine}:
                raise ValueError(f"sighting {args.sighting} was not matched to {args.not_name}")
            return {**client.correct(args.sighting, None), "not": args.not_name}
        return {**client.correct(args.sighting, args.is_name), "is": args.is_name}

    return _run(args, lambda s: enroll.correct(s, args.sighting, args.is_name, args.not_name), show,
                through_api)


def cmd_forget(args: argparse.Namespace) -> int:
    from camd.identity import enroll

    def show(result: dict[str, Any]) -> None:
        print(f"forgot {result['forgotten']}: {result['prototypes']} prototypes, {result['sightings']} "
              f"sightings, {result['crops']} crop files deleted")  # fmt: skip

    return _run(args, lambda s: enroll.forget(s, args.name), show, lambda client: client.forget(args.name))


def cmd_eval(args: argparse.Namespace) -> int:
    from camd.identity.report import DEFAULT_DATA, print_report, run_eval

    data = args.data or DEFAULT_DATA
    if not data.is_dir():
        print(f"error: no data folder at {data} (give --data: the shared data with reid/, faces/, video/)",
              file=sys.stderr)  # fmt: skip
        return EXIT_ERROR
    from rich.console import Console

    with Console(stderr=True).status("camd eval: faces, body re-ID, open set, matcher, timings (~1 min)"):
        result = run_eval(Path(data), Path(args.models_dir))
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print_report(result)
    return 0
