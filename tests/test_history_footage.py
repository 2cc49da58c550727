"""Asking the memory, on sightings the daemon's own path made from real footage.

vtest.avi (../shared/data/video) is played as two cameras: its first 42 s as `door`, the rest as
`drive`, both starting yesterday at 14:00 local time. Every sampled frame goes through the daemon's
decoder, detector, object filters and tracker (camd/vision/offline.py), then its events and identity
stages (camd/tracks.py: real body, colour, pose and face models), which store the sightings; the
visit recorder sees each ended track as the daemon's fan-out would show it. The hand-made labels of
the clip (camd/eval/truth) say who each sighting is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from camd.config.schema import Config
from camd.eval.truth import load_truth
from camd.events import TrackEvents
from camd.history.live import HistoryRecorder
from camd.history.queries import day_digest, list_visits, search_sightings
from camd.history.search import SearchQuery, UnknownCameraError
from camd.history.sheet import write_sheet
from camd.history.visits import build_visits
from camd.history.when import TimeExpressionError, TimeRange, time_range
from camd.identity.extractors import Extractors
from camd.identity.memory import UnknownPersonError
from camd.identity.service import IdentityService
from camd.tracks import CameraTracks
from camd.types import EventKind, Frame
from camd.vision.offline import daemon_view
from tests.support.data import shared_data
from tests.support.identity_data import identity_config

pytest_plugins = ["tests.support.identity"]

REPO = Path(__file__).resolve().parents[1]
SPLIT_S = 42.0
CAMERAS = {"door": (0.0, SPLIT_S), "drive": (SPLIT_S, None)}
DETECT_FPS = 5.0


def _base() -> float:
    """Yesterday 14:00 local time: the moment both cameras' clips start."""
    yesterday = datetime.now() - timedelta(days=1)
    return yesterday.replace(hour=14, minute=0, second=0, microsecond=0).timestamp()


@dataclass
class Footage:
    config: Config
    base: float
    truth: dict[str, str | None] = field(default_factory=dict)  # sighting id -> label (None: nobody)
    sightings: list[dict[str, Any]] = field(default_factory=list)

    def open(self) -> IdentityService:
        return IdentityService(self.config, load_extractors=False)

    def ids(self, answer: dict[str, Any]) -> list[str]:
        return [row["sighting_id"] for row in answer["results"]]


@pytest.fixture(scope="module")
def footage(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, identity_models: Extractors
) -> Footage:
    clip = shared_data("video/vtest.avi")
    truth = load_truth("vtest")
    state = tmp_path_factory.mktemp("history") / "state"
    config = Config.model_validate({
        **identity_config(state, models_dir).model_dump(mode="json"),
        "cameras": {name: {"url": str(clip), "detect_fps": DETECT_FPS} for name in CAMERAS},
    })  # fmt: skip
    base = _base()
    found = Footage(config, base)
    service = IdentityService(config, extractors=identity_models)
    recorder = HistoryRecorder(config, service.memory.log)  # no MQTT here: tests/test_history.py has it
    boxes: dict[str, dict[float, Any]] = {}  # sighting (event) id -> {pts: box}
    try:
        for camera, (start, end) in CAMERAS.items():
            events = TrackEvents(camera, config.events, config.objects, config.tracker.lost_track_s)
            tracks = CameraTracks(events, service.camera(camera))
            by_track: dict[int, dict[float, Any]] = {}
            for tracked in daemon_view(clip, config, DETECT_FPS, start_s=start, end_s=end):
                f = tracked.frame
                frame = Frame(camera, f.index, base + f.timestamp, f.image, f.pts_seconds)
                objects = list(tracked.tracked)
                for obj in objects:
                    by_track.setdefault(obj.track_id, {})[f.pts_seconds or f.timestamp] = obj.detection.box
                published = tracks.update(objects, frame) + tracks.identify(frame, objects)
                _ended(published, by_track, boxes, recorder)
            _ended(tracks.finish(), by_track, boxes, recorder)
        found.sightings = service.memory.log.select("1", ())
    finally:
        service.close()
    for sighting in found.sightings:
        found.truth[sighting["sighting_id"]] = truth.label_of_times(boxes.get(sighting["sighting_id"], {}))
    assert len(found.sightings) >= 30, "vtest shows dozens of walkers"
    return found


def _ended(
    events: list[Any], by_track: dict[int, Any], boxes: dict[str, Any], recorder: HistoryRecorder
) -> None:
    for event in events:
        if event.kind is EventKind.END:
            boxes[event.after.event_id] = by_track.get(event.after.track_id, {})
            recorder(event)


@pytest.fixture
def service(footage: Footage) -> Iterator[IdentityService]:
    opened = footage.open()
    yield opened
    opened.close()


# -- search ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_search_by_camera_time_and_class(footage: Footage, service: IdentityService) -> None:
    every = footage.sightings
    door = search_sightings(service, SearchQuery.build(camera="door", limit=1000))
    assert {r["camera"] for r in door["results"]} == {"door"}
    assert len(door["results"]) == sum(1 for s in every if s["camera"] == "door")
    times = [r["end_time"] for r in door["results"]]
    assert times == sorted(times, reverse=True), "newest first"

    # "yesterday 14:00:45" to "yesterday 14:05": only what was still in view 45 s in (the drive clip).
    span = time_range(between=("yesterday 14:00:45", "yesterday 14:05"))
    assert span.after == pytest.approx(footage.base + 45.0)
    late = search_sightings(service, SearchQuery.build(after=span.after, before=span.before, limit=1000))
    expected = {s["sighting_id"] for s in every if s["end_time"] >= footage.base + 45.0}
    assert set(footage.ids(late)) == expected and {r["camera"] for r in late["results"]} == {"drive"}
    recent = time_range(last="1h")  # the clips played yesterday afternoon
    assert search_sightings(service, SearchQuery.build(after=recent.after))["results"] == []
    since = time_range(since="yesterday")
    assert len(search_sightings(service, SearchQuery.build(after=since.after, limit=1000))["results"]) == len(
        every
    )

    strangers = search_sightings(service, SearchQuery.build(classes=["stranger"], limit=1000))["results"]
    assert strangers and {r["label"] for r in strangers} == {"person"}
    assert {r["identity_class"] for r in strangers} == {"stranger"}
    vehicles = search_sightings(service, SearchQuery.build(classes=["unknown vehicle"], limit=1000))[
        "results"
    ]
    assert {r["identity_class"] for r in vehicles} <= {"unknown_vehicle"}
    assert len(strangers) + len(vehicles) == sum(1 for s in every if s.get("identity_class"))

    someone = strangers[0]["person_id"]
    theirs = search_sightings(service, SearchQuery.build(person=someone, limit=1000))["results"]
    assert theirs and {r["person_id"] for r in theirs} == {someone}


@pytest.mark.slow
@pytest.mark.shared_data
def test_search_by_what_someone_wore(footage: Footage, service: IdentityService) -> None:
    """red-jacket-woman (bright red top, jeans) is found by "red top" and never by a top colour she
    does not wear; the walkers in black by "black top"."""
    hers = {sid for sid, label in footage.truth.items() if label == "red-jacket-woman"}
    assert hers, "the labels name at least one sighting of red-jacket-woman"
    red = search_sightings(service, SearchQuery.build(wearing=["red top"], limit=1000))
    ranked = footage.ids(red)
    print(
        "red top:",
        [(footage.truth.get(sid), r["score"]) for sid, r in zip(ranked, red["results"], strict=True)],
    )
    assert hers & set(ranked[: max(3, len(ranked) // 2)]), "her red top found, in the better half"
    assert all(dict(map(tuple, r["wore"]["upper"])).get("red", 1.0) >= 0.2 for r in red["results"])
    scores = [r["score"] for r in red["results"]]
    assert scores == sorted(scores, reverse=True), "best match first"
    for wrong in ("green top", "white top", "yellow jacket"):
        assert not hers & set(footage.ids(search_sightings(service, SearchQuery.build(wearing=[wrong])))), (
            wrong
        )
    in_black = {sid for sid, label in footage.truth.items() if label and label.startswith("black-coat")}
    black = set(footage.ids(search_sightings(service, SearchQuery.build(wearing=["black coat"], limit=1000))))
    assert in_black and in_black <= black
    with pytest.raises(ValueError, match="colour and a garment"):
        SearchQuery.build(wearing=["red hat"])


@pytest.mark.slow
@pytest.mark.shared_data
def test_more_like_this_puts_the_same_persons_other_sightings_first(
    footage: Footage, service: IdentityService
) -> None:
    """For every labelled walker seen in more than one sighting, each of their sightings asks for
    more like it, on both cameras: the first answer is most often the same walker."""
    labels = Counter(label for label in footage.truth.values() if label)
    anchors = [sid for sid, label in footage.truth.items() if label and labels[label] >= 2]
    assert len(anchors) >= 6, "several walkers come back in vtest"
    first_same, in_three, chance = 0, 0, 0.0
    labelled = sum(labels.values())
    for sid in anchors:
        answer = search_sightings(service, SearchQuery.build(like=sid, limit=5))
        rows = answer["results"]
        assert sid not in footage.ids(answer) and rows
        assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
        same = [footage.truth.get(r["sighting_id"]) == footage.truth[sid] for r in rows]
        first_same += same[0]
        in_three += any(same[:3])
        chance += (labels[footage.truth[sid]] - 1) / max(1, labelled - 1)
    rate, chance_rate = first_same / len(anchors), chance / len(anchors)
    print(
        f"more like this: the same walker first {first_same}/{len(anchors)} ({rate:.2f}), in the first "
        f"three {in_three}/{len(anchors)}; by chance first {chance_rate:.2f}"
    )
    # Measured with OSNet x0.25 on this low-resolution clip: 13/26 first, 17/26 in three, chance 0.07.
    assert rate >= 0.4 and rate >= 4 * chance_rate and in_three >= first_same
    with pytest.raises(UnknownPersonError, match="no sighting 'nope'"):
        search_sightings(service, SearchQuery.build(like="nope"))


@pytest.mark.slow
@pytest.mark.shared_data
def test_clear_errors_for_an_unknown_camera_name_or_time(service: IdentityService) -> None:
    with pytest.raises(UnknownCameraError, match="no camera 'garage': camd knows door, drive"):
        search_sightings(service, SearchQuery.build(camera="garage"))
    with pytest.raises(UnknownPersonError, match="nobody called 'bob'"):
        search_sightings(service, SearchQuery.build(person="bob"))
    with pytest.raises(TimeExpressionError, match="cannot read 'the day after never' as a time"):
        time_range(since="the day after never")
    with pytest.raises(ValueError, match="unknown class 'aliens'"):
        SearchQuery.build(classes=["aliens"])


# -- visits and the digest ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_visits_join_across_cameras_and_split_after_the_gap(
    footage: Footage, service: IdentityService
) -> None:
    every = [s for s in footage.sightings if s.get("person_id")]
    by_person = Counter(s["person_id"] for s in every)
    wide = build_visits(every, gap_s=600.0)
    assert len(wide) == len(by_person), "within 10 minutes each identity makes one visit"
    both = [v for v in wide if {"door", "drive"} <= set(v.cameras)]
    assert both, "someone was linked across the two cameras"
    visit = both[0]
    own = sorted((s for s in every if s["person_id"] == visit.person_id), key=lambda s: s["start_time"])
    assert visit.sightings == [s["sighting_id"] for s in own]
    assert visit.start_time == min(s["start_time"] for s in own)
    assert visit.end_time == max(s["end_time"] for s in own)
    assert visit.arrival_camera == own[0]["camera"]

    # A gap shorter than the longest pause between two of their sightings splits the visit there.
    pauses = [b["start_time"] - max(a["end_time"] for a in own[: i + 1]) for i, b in enumerate(own[1:])]
    longest = max(pauses)
    assert longest > 0, "their sightings are not all overlapping"
    split = [v for v in build_visits(every, gap_s=longest * 0.9) if v.person_id == visit.person_id]
    assert len(split) >= 2 and sum(len(v.sightings) for v in split) == len(own)
    assert split[0].end_time + longest * 0.9 < split[1].start_time

    # What the recorder kept as the tracks ended is what the log's sightings give.
    recorded = list_visits(service, TimeRange(), gap_s=600.0)["visits"]
    assert {v["id"]: v["sightings"] for v in recorded} == {v.id: v.sightings for v in wide}
    listed = list_visits(service, TimeRange(), camera="drive")["visits"]
    assert listed and all("drive" in v["cameras"] for v in listed)


@pytest.mark.slow
@pytest.mark.shared_data
def test_the_digest_of_a_real_run(footage: Footage, service: IdentityService) -> None:
    answer = day_digest(service, "yesterday")
    print("\n" + answer["text"])
    strangers = {s["person_id"] for s in footage.sightings if s.get("identity_class") == "stranger"}
    assert answer["counts"]["stranger"] == len(strangers)
    assert answer["lines"][0].startswith((datetime.now() - timedelta(days=1)).strftime("%A"))
    assert any(line.startswith(f"Strangers ({len(strangers)}): ") for line in answer["lines"])
    for camera in CAMERAS:
        count = sum(1 for s in footage.sightings if s["camera"] == camera)
        assert any(line.startswith(f"{camera}: {count} sightings") for line in answer["lines"])
    assert len(answer["lines"]) <= 8, "a few readable lines"
    assert day_digest(service, "today")["lines"][-1] == "Nobody was seen."


# -- the contact sheet in a real browser --------------------------------------------------------------


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("needs Debian's chromium and chromium-driver (make system-deps installs them)")
    return browser, driver


@pytest.mark.slow
@pytest.mark.shared_data
def test_contact_sheet_opens_in_headless_chromium_with_every_crop_loaded(
    footage: Footage, service: IdentityService, tmp_path: Path
) -> None:
    from tests.support.browser import headless_chromium

    browser, driver = _chromium()
    answer = search_sightings(service, SearchQuery.build(camera="drive", limit=12), with_crops=True)
    sheet = write_sheet(answer, tmp_path / "sheet.html")
    assert sheet.stat().st_mode & 0o077 == 0, "crops are biometric: owner-only"
    with headless_chromium(browser, driver) as page:
        page.open(sheet.as_uri())
        images = page.run(
            "return [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt])"
        )
        captions = page.run("return [...document.querySelectorAll('figcaption')].map(c => c.innerText)")
        title = page.run("return document.title")
    assert title == "camd search"
    with_crops = [r for r in answer["results"] if r.get("crop_jpeg")]
    assert len(images) == len(with_crops) >= 10
    assert all(done and width > 10 and height > 10 for done, width, height, _ in images), images
    for caption, row in zip(captions, answer["results"], strict=True):
        assert row["camera"] in caption and row["time"] in caption and str(row["who"]) in caption


# -- through the running daemon -----------------------------------------------------------------------


def camd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "camd.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=180)  # fmt: skip


@pytest.mark.slow
@pytest.mark.shared_data
def test_search_visits_and_digest_through_the_running_daemon(
    footage: Footage, tmp_path: Path, models_dir: Path
) -> None:
    """The daemon holds the store: the CLI asks its control API, and gets what it gets directly."""
    import json

    from camd.config.loader import load_config
    from tests.support.service import free_port, running_daemon, wait_for

    state = tmp_path / "state"
    shutil.copytree(footage.config.state_dir, state)
    direct = camd("search", "--camera", "drive", "--since", "yesterday", "--json", "--state-dir", str(state),
                  "--models-dir", str(models_dir))  # fmt: skip
    assert direct.returncode == 0, direct.stderr
    config_file = tmp_path / "camd.yaml"
    bikes = models_dir / "demo_bikes_clip" / "bikes.mp4"
    config_file.write_text(
        f"state_dir: {state}\nmodels_dir: {models_dir}\nmqtt: {{enabled: false}}\n"
        f"api: {{port: {free_port()}}}\ncameras:\n"
        f"  door: {{url: {bikes}, loop: true, realtime: true}}\n  drive: {{url: {bikes}, enabled: false}}\n"
    )
    started = time.time()
    with running_daemon(load_config(config_file)) as daemon:
        wait_for(lambda: daemon.pipelines["door"].stats.frames >= 3, "frames from the camera")
        through = camd(
            "search", "--camera", "drive", "--since", "yesterday", "--json", "--config", str(config_file)
        )
        assert through.returncode == 0, through.stderr
        assert [r["sighting_id"] for r in json.loads(through.stdout)["results"]] == [
            r["sighting_id"] for r in json.loads(direct.stdout)["results"]
        ]
        sheet = tmp_path / "sheet.html"
        table = camd("search", "--wearing", "red top", "--html", str(sheet), "--config", str(config_file))
        assert table.returncode == 0 and "stranger" in table.stdout and sheet.read_text().count("<img") >= 1

        visits = camd("visits", "--since", "yesterday", "--camera", "drive", "--config", str(config_file))
        assert visits.returncode == 0 and "arrived at" in visits.stdout, visits.stderr
        digest = camd("digest", "--day", "yesterday", "--config", str(config_file))
        assert digest.returncode == 0 and "drive: " in digest.stdout, digest.stderr

        for args, message in (
            (("search", "--camera", "garage"), "no camera 'garage'"),
            (("search", "--person", "bob"), "nobody called 'bob'"),
            (("search", "--like", "nope"), "no sighting 'nope'"),
            (("search", "--since", "flurb"), "cannot read 'flurb' as a time"),
            (("visits", "--last", "2 parsecs"), "cannot read '2 parsecs' as a duration"),
        ):
            failed = camd(*args, "--config", str(config_file))
            assert failed.returncode == 1 and message in failed.stderr, (args, failed.stderr)

        # Meanwhile the daemon's own recorder joined the looping street clip's sightings into visits.
        assert daemon.identity is not None
        log = daemon.identity.memory.log

        def recorded() -> bool:
            today = log.select("json_extract(payload, '$.camera') = 'door' AND person_id IS NOT NULL "
                               "AND end_time > ?", (started,))  # fmt: skip
            held = {sid for visit in log.visits("end_time > ?", (started,))
                    for sid in visit["sightings"]}  # fmt: skip
            return bool(today) and {s["sighting_id"] for s in today} <= held

        wait_for(recorded, "a visit holding each of the live camera's sightings", timeout=120)
