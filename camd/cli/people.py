"""`camd enroll|people|correct|forget|eval`: thin argument parsing around camd.identity.enroll
(and camd.eval for `eval`).

These commands open the memory directly. While the daemon runs, its embedded store is locked, so they
go through the daemon's control API instead (camd.api.client): the same operations, run by the daemon.
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
    """Add the people commands to camd's argparse subparsers."""
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

    people = sub.add_parser(
        "people", help="list, show, rename, remove, export enrolled people, or re-embed them (reembed)"
    )
    people.add_argument("action", choices=["list", "show", "rename", "remove", "export", "reembed"])
    people.add_argument("names", nargs="*", help="show NAME | rename OLD NEW | remove NAME | export NAME")
    people.add_argument("--strangers", action="store_true", help="list: include unknown-N strangers")
    people.add_argument("--out", type=Path, default=None,
                        help="export: the zip to write (everything stored about NAME, owner-only)")
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
    from camd.config.schema import Config

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

    service = IdentityService(_config(args), load_extractors=False)  # loaded on first use: enroll only
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
    sighting_kind = "vehicle" if args.vehicle else None  # a sighting knows its kind; --vehicle checks it

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
        return enroll.enroll_sighting(service, args.name, args.role, args.sighting, sighting_kind)

    def through_api(client: Any) -> Any:
        if args.photos is not None:
            return _enroll_photos_through(client, args.name, args.role, args.photos, kind)
        if args.sighting is not None:
            return client.enroll_sighting(args.name, args.sighting, args.role, sighting_kind)
        return _clip_through_daemon(client, args, kind)

    def show(result: dict[str, Any]) -> None:
        added = ", ".join(f"{k} {v}" for k, v in result["added"].items() if v)
        print(f"enrolled {result['name']} ({result['role']} {result['kind']}): {added or 'nothing new'}")
        for row in result.get("skipped", []):
            print(f"  skipped {row['photo']}: {row['reason']}")

    return _run(args, action, show, through_api)


def _enroll_photos_through(
    client: Any, name: str, role: str, photos: Path, kind: str = "person"
) -> dict[str, Any]:
    """Photos are read here (any kind read_photo takes, each refused with its own reason) and sent to
    the daemon as PNGs; its answer names them as this folder does, not by their temporary names."""
    import re
    import tempfile

    import cv2

    from camd.api.client import ApiError
    from camd.identity.enroll import EnrollmentError, photo_files, read_photo

    originals: list[Path] = []
    skipped: list[dict[str, str]] = []

    def own_names(text: str) -> str:  # the daemon calls them photo000.png, photo001.png, ...
        return re.sub(r"\S*photo(\d{3})\.png", lambda m: str(originals[int(m.group(1))]), text)

    with tempfile.TemporaryDirectory(prefix="camd-enroll-") as folder:
        converted: list[Path] = []
        for path in photo_files(photos):
            try:
                image = read_photo(path)
            except EnrollmentError as exc:
                skipped.append({"photo": str(path), "reason": str(exc).removeprefix(f"{path}: ")})
                continue
            png = Path(folder) / f"{len(converted):04d}.png"
            if cv2.imwrite(str(png), image):
                converted.append(png)
                originals.append(path)
        if not converted:
            reasons = "; ".join(f"{Path(s['photo']).name}: {s['reason']}" for s in skipped)
            raise EnrollmentError(f"nothing to enroll from {photos}: {reasons}")
        try:
            result: dict[str, Any] = client.enroll_photos(name, converted, role, kind)
        except ApiError as exc:
            raise ApiError(exc.status, own_names(str(exc))) from None
    for row in result.get("skipped", []):
        row["photo"], row["reason"] = own_names(row["photo"]), own_names(row["reason"])
    result["photos_used"] = [own_names(used) for used in result.get("photos_used", [])]
    result["skipped"] = skipped + result.get("skipped", [])
    return result


def _clip_through_daemon(client: Any, args: argparse.Namespace, kind: str) -> Any:
    """Upload the clip to the daemon (a bar for the upload, then a spinner while it tracks the clip).
    Several tracks: their crops come back in the answer and are saved here, listed like local mode."""
    from rich.progress import Progress

    from camd.api.client import ApiError
    from camd.identity.enroll import TrackChoiceNeeded

    with Progress(transient=True) as progress:
        task = progress.add_task(f"sending {args.clip.name} to the daemon", total=None)

        def sent(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)
            if done >= total:
                progress.update(task, description=f"the daemon is tracking {args.clip.name}", total=None)

        try:
            return client.enroll_clip(args.name, args.clip, args.role, kind, args.track, args.start, args.end,
                                      progress=sent)  # fmt: skip
        except ApiError as exc:
            tracks = exc.detail.get("tracks") if exc.status == 409 and isinstance(exc.detail, dict) else None
            if tracks is None:
                raise
            folder = _save_listing(tracks, args.clip)
            raise TrackChoiceNeeded(
                f"{args.clip} shows {len(tracks)} {kind} tracks; choose one with --track N "
                f"(a crop of each is in {folder})", tracks,
            ) from None  # fmt: skip


def _save_listing(tracks: list[dict[str, Any]], clip: Path) -> Path:
    """Write the crops the daemon sent (base64 JPEG) to a private folder here; point each row at its file."""
    import base64
    import tempfile

    from camd.private import write_private

    folder = Path(tempfile.mkdtemp(prefix=f"camd-tracks-{clip.stem[:32]}-"))
    for row in tracks:
        data = row.pop("crop_jpeg", None)
        row["crop"] = None
        if data:
            path = folder / f"track-{row['track']}.jpg"
            write_private(path, base64.b64decode(data))
            row["crop"] = str(path)
    return folder


def cmd_people(args: argparse.Namespace) -> int:
    from camd.identity import enroll

    wanted = {"list": 0, "show": 1, "rename": 2, "remove": 1, "export": 1, "reembed": 0}[args.action]
    if len(args.names) != wanted or (args.action == "export") != (args.out is not None):
        usage = {"list": "people list", "show": "people show NAME", "rename": "people rename OLD NEW",
                 "remove": "people remove NAME", "reembed": "people reembed",
                 "export": "people export NAME --out FILE.zip"}[args.action]  # fmt: skip
        print(f"error: usage: camd {usage}", file=sys.stderr)
        return 2

    def action(service: Any) -> Any:
        if args.action == "export":
            from camd.identity.export import export_file

            return export_file(service, args.names[0], args.out)
        if args.action == "reembed":
            from camd.identity.reembed import reembed_all

            return {"body_model": service.body_model.describe(), **reembed_all(service).as_dict()}
        if args.action == "list":
            return enroll.people_list(service, args.strangers)
        if args.action == "show":
            return enroll.person_show(service, args.names[0])
        if args.action == "rename":
            return enroll.rename(service, *args.names)
        return enroll.forget(service, args.names[0])

    def through_api(client: Any) -> Any:
        if args.action == "export":
            from camd.identity.export import save_bundle

            return save_bundle(client.export_person(args.names[0]), args.out)
        if args.action == "reembed":
            return client.reembed()
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
        elif args.action == "reembed":
            gone = ", ".join(result["missing_crops"])
            missing = f"; crops missing for {gone}" if gone else ""
            print(f"re-embedded {result['prototypes']} body prototypes of {len(result['people'])} people "
                  f"with {result['body_model']} in {result['seconds']} s{missing}")  # fmt: skip
        elif args.action == "export":
            counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in result["counts"].items())
            print(f"exported {result['person']} to {result['file']}: {counts}")
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
            # The daemon refuses unless the sighting was matched to NAME, as enroll.correct does here.
            return client.correct(args.sighting, None, not_name=args.not_name)
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
    from camd.eval.report import DEFAULT_DATA, print_report, run_eval

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
