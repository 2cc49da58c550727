"""`camd demo` on real footage: it enrolls Lin-Manuel Miranda from one photo and names him on the stage clip
(checked against the hand labels in camd/eval/truth/hamilton.json), through the real daemon and a real MQTT
broker; the console prints decisions (one line per decided track), the event stream only with --verbose."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path

import pytest
from rich.console import Console

from camd.demo import HAMILTON, DemoError, DemoOptions, DemoRun, run_demo, shared_data
from camd.eval.truth import iou, load_truth
from camd.publish.console import DecisionConsole
from camd.types import EventKind, TrackEvent
from tests.support.data import shared_data as shared_or_skip

LIN = "Lin-Manuel Miranda"


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, highlight=False, soft_wrap=True, color_system=None), out


@pytest.fixture(scope="module")
def stage_run(models_dir: Path, mqtt_broker, mqtt_recorder_module) -> dict:  # type: ignore[no-untyped-def]
    """One verbose demo run of the stage camera (~15-30 s on 2 cores), its console text and its events."""
    clip = shared_or_skip(str(HAMILTON))
    data = clip.parents[2]
    events: list[TrackEvent] = []
    console, out = _console()
    demo = DemoRun(
        DemoOptions(data=data, cameras=["stage"], models_dir=models_dir, verbose=True,
                    mqtt_host=mqtt_broker.host, mqtt_port=mqtt_broker.port),
        console=console, extra_sinks=[events.append],
    )  # fmt: skip
    code = demo.run()
    print(out.getvalue())  # shown when a test fails
    return {"code": code, "text": out.getvalue(), "events": events, "demo": demo,
            "mqtt": mqtt_recorder_module}  # fmt: skip


@pytest.fixture(scope="module")
def mqtt_recorder_module(mqtt_broker):  # type: ignore[no-untyped-def]
    from tests.support.broker import MqttRecorder

    with MqttRecorder(mqtt_broker, "camd/events").start() as recorder:
        yield recorder


@pytest.mark.slow
def test_demo_names_lin_manuel_miranda_where_he_is(stage_run: dict) -> None:
    assert stage_run["code"] == 0, stage_run["text"]
    text = stage_run["text"]
    named = [line for line in text.splitlines() if LIN in line and "family" in line and "by face" in line]
    assert named, f"no decided line names {LIN}:\n{text}"
    assert "enrolled Lin-Manuel Miranda (family) from one photo" in text

    # Where: every track named Lin starts on Lin (IoU >= 0.5 with his labelled box), and both of his
    # passages on the stage (frames 1-19, 83-209) have a track named Lin over him.
    truth = load_truth("hamilton")
    demo = stage_run["demo"]
    origin = demo.clock.origins("stage")
    assert origin is not None
    first = truth.time_of(0)
    boxes: dict[int, list[tuple[int, tuple[float, ...]]]] = defaultdict(list)
    names: dict[int, str | None] = {}
    for event in stage_run["events"]:
        after = event.after
        boxes[after.track_id].append((truth.frame_of(first + after.frame_time - origin), after.box))
        if event.kind is EventKind.END:
            names[after.track_id] = after.identity.name
    lin = truth.person("lin-manuel-miranda")

    def on_lin(frame: int, box: tuple[float, ...]) -> bool:
        return any(label == lin.label and iou(box, b) >= 0.5 for label, b in truth.boxes_at(frame))

    lin_tracks = [tid for tid, name in names.items() if name == LIN]
    assert lin_tracks
    for tid in lin_tracks:
        frame, box = boxes[tid][0]
        assert on_lin(frame, box), f"track {tid} named {LIN} starts at frame {frame} off him: {box}"
    for passage in lin.passages:
        assert any(
            passage.first_frame <= frame <= passage.last_frame and on_lin(frame, box)
            for tid in lin_tracks for frame, box in boxes[tid]
        ), f"no track named {LIN} over him in frames {passage.first_frame}-{passage.last_frame}"  # fmt: skip
    # Nobody else is named: the other tracks are strangers or not named.
    assert set(names.values()) <= {LIN, None}

    # The summary table has his row, decided by face.
    row = next(line for line in text.splitlines() if line.lstrip("│┃ ").startswith(LIN))
    assert "family" in row and "stage" in row and "face" in row, row
    # Its state was a temporary folder, gone after the run (a second run starts clean).
    assert demo.state_dir is not None and not demo.state_dir.exists()


@pytest.mark.slow
def test_demo_publishes_its_decisions_on_mqtt(stage_run: dict) -> None:
    """The demo is the daemon: the same decisions reach camd/events on the broker."""
    ids = {e.after.event_id for e in stage_run["events"] if e.after.identity.name == LIN}
    assert ids

    def named(messages: list) -> bool:  # type: ignore[type-arg]
        for m in messages:
            payload = json.loads(m.payload)
            after = payload["after"]
            if after["id"] in ids and payload["type"] == "end" and after.get("identity") == LIN:
                return True
        return False

    stage_run["mqtt"].wait_for(named, timeout=10, what=f"an end event naming {LIN}")


@pytest.mark.slow
def test_verbose_shows_every_event_quiet_only_decisions(stage_run: dict) -> None:
    verbose = stage_run["text"]
    events: list[TrackEvent] = stage_run["events"]
    assert "identity pending" in verbose and " NEW " in verbose and " END " in verbose

    # The same real events, printed without --verbose: no pending updates, one line per ended track
    # (each decided, or saying why not), however many updates repeated an early decision before.
    console, out = _console()
    quiet = DecisionConsole(console=console, clock=stage_run["demo"].clock)
    for event in events:
        quiet(event)
    lines = out.getvalue().splitlines()
    ended = [e for e in events if e.kind is EventKind.END]
    assert "identity pending" not in out.getvalue()
    assert not any(" NEW " in line or " UPDATE " in line for line in lines)
    assert len(lines) == len(ended), "\n".join(lines)
    assert sum(LIN in line for line in lines) == len({e.after.track_id for e in ended
                                                      if e.after.identity.name == LIN})  # fmt: skip
    assert len(quiet.sightings) == len(ended)


def test_demo_bad_options_say_what_to_do(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DemoError, match=r"missing .*short_hamilton_clip\.mp4"):
        shared_data(tmp_path)
    console, out = _console()
    assert run_demo(DemoOptions(cameras=["garage"], models_dir=models_dir, mqtt=False), console) == 2
    assert "no demo camera garage; this demo has" in out.getvalue()


@pytest.mark.slow
def test_demo_without_shared_data_says_what_its_footage_shows(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ../shared/data the demo plays the traffic clip a registry package ships: vehicles only,
    and it says so rather than pretending to recognise anyone."""
    import camd.demo

    monkeypatch.setattr(camd.demo, "shared_data", lambda _data: None)  # as on a machine without it
    console, out = _console()
    assert run_demo(DemoOptions(models_dir=models_dir, mqtt=False), console) == 0, out.getvalue()
    text = out.getvalue()
    assert "bikes.mp4" in text and "cannot show anyone recognised" in text
    assert not any(line.startswith("enrolled ") for line in text.splitlines())  # nobody to enroll here
    decided = [line for line in text.splitlines() if "unknown_vehicle" in line and "vehicle-" in line]
    assert decided, text
