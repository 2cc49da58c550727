"""camd/history without footage: times in words, clothing colours from the real colour descriptor,
visits built one sighting at a time, visits kept, expired, renamed, exported and erased with their
identity in the real sighting log, and the daemon's visit recorder on a real MQTT broker with Home
Assistant's entities. tests/test_history_footage.py runs the same on sightings made from real video."""

from __future__ import annotations

import itertools
import json
import random
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from camd.config.schema import Config
from camd.history import colours
from camd.history.live import HistoryRecorder
from camd.history.queries import day_digest, list_visits
from camd.history.visits import VisitBuilder, build_visits
from camd.history.when import TimeExpressionError, TimeRange, day_range, parse_duration, time_range
from camd.identity.evidence.colour import ClothingColourDescriptor
from camd.identity.service import IdentityService
from camd.publish.hass import HassBridge
from camd.publish.mqtt import MqttPublisher
from tests.support.broker import BrokerProcess, MqttRecorder
from tests.support.hass import hass_config, make_event

NOW = datetime(2026, 12, 7, 12, 30)


# -- times in words ------------------------------------------------------------------------------------


def test_times_in_plain_words() -> None:
    yesterday = datetime(2026, 12, 6).timestamp()
    assert time_range(since="yesterday", now=NOW) == TimeRange(yesterday, None)
    # 14:00 has not come yet today: the last 14:00 to 16:00 was yesterday's
    assert time_range(between=("14:00", "16:00"), now=NOW) == TimeRange(
        datetime(2026, 12, 6, 14).timestamp(), datetime(2026, 12, 6, 16).timestamp()
    )
    assert time_range(between=("10:00", "12:00"), now=NOW).after == datetime(2026, 12, 7, 10).timestamp()
    assert time_range(between=("22:00", "02:00"), now=NOW).before == datetime(2026, 12, 7, 2).timestamp()
    assert time_range(last="2h", now=NOW).after == NOW.timestamp() - 7200
    assert time_range(since="monday", until="yesterday", now=NOW).before == pytest.approx(
        datetime(2026, 12, 7).timestamp(), abs=1e-3
    )
    assert parse_duration("1h30m") == 5400 and parse_duration("90 min") == 5400
    assert parse_duration("1.5 days") == 1.5 * 86400
    span, day = day_range("yesterday", NOW)
    assert day == "2026-12-06" and span.after == yesterday and span.contains(yesterday + 86399)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"since": "the day after never"}, "cannot read 'the day after never' as a time: try"),
        ({"last": "2 parsecs"}, "cannot read '2 parsecs' as a duration"),
        ({"last": "h2"}, "as a duration"),
        ({"since": "yesterday", "last": "2h"}, "give one of --since, --between, --last"),
        ({"since": "today", "until": "yesterday"}, "is before --since"),
    ],
)
def test_a_bad_time_says_what_would_do(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TimeExpressionError, match=message):
        time_range(now=NOW, **options)


# -- clothing colours ----------------------------------------------------------------------------------


def _person(upper: tuple[int, int, int], lower: tuple[int, int, int]) -> np.ndarray:
    """A 128x64 figure: upper body and legs in these BGR colours, on a mid-grey street."""
    image = np.full((128, 64, 3), 128, np.uint8)
    image[18:64, 8:56] = upper
    image[64:118, 12:52] = lower
    return image


@pytest.mark.parametrize(
    ("upper", "lower", "top", "bottom"),
    [
        ((30, 30, 200), (20, 20, 20), "red", "black"),  # red top, black trousers
        ((160, 60, 20), (235, 235, 235), "blue", "white"),
        ((40, 160, 40), (140, 90, 40), "green", "blue"),  # green top, denim
        ((30, 200, 230), (120, 120, 120), "yellow", "grey"),
    ],
)
def test_named_colours_from_the_descriptor_sightings_keep(
    upper: tuple[int, int, int], lower: tuple[int, int, int], top: str, bottom: str
) -> None:
    vector = ClothingColourDescriptor().embed([_person(upper, lower)])[0]
    described = colours.describe(vector)
    assert described["upper"][0][0] == top and described["lower"][0][0] == bottom
    upper_shares, _ = colours.shares(vector)
    assert upper_shares[0, colours.NAMES.index(top)] >= colours.MIN_SHARE
    others = [n for n in colours.NAMES if n not in (top, "grey")]
    assert all(upper_shares[0, colours.NAMES.index(n)] < colours.MIN_SHARE for n in others)


def test_clothing_in_words() -> None:
    assert colours.parse_wearing("red top") == ("upper", "red")
    assert colours.parse_wearing("Black trousers") == ("lower", "black")
    assert colours.parse_wearing("navy jeans") == ("lower", "blue")
    assert colours.parse_wearing("grey hoodie") == ("upper", "grey")
    for bad in ("red", "top", "red blue top", "tartan kilt"):
        with pytest.raises(ValueError, match="a colour and a garment"):
            colours.parse_wearing(bad)


# -- visits --------------------------------------------------------------------------------------------


def _sighting(sid: str, person: str, camera: str, start: float, end: float, **extra: Any) -> dict[str, Any]:
    return {
        "sighting_id": sid,
        "person_id": person,
        "camera": camera,
        "start_time": start,
        "end_time": end,
        "label": "person",
        "identity_class": "stranger",
        **extra,
    }


def test_visits_one_at_a_time_equal_visits_from_the_whole_log() -> None:
    rng = random.Random(7)
    sightings = []
    for person in ("anna", "unknown-1", "unknown-2"):
        t = 1000.0
        for i in range(12):
            t += rng.choice([5.0, 30.0, 200.0, 900.0])  # a few gaps longer than 600 s
            camera = rng.choice(["door", "drive", "garden"])
            sightings.append(_sighting(f"{person}-{i}", person, camera, t, t + rng.uniform(1, 40)))
    whole = build_visits(sightings, 600.0)
    builder = VisitBuilder(600.0)
    ended = []
    for sighting in sorted(sightings, key=lambda s: s["end_time"]):  # as tracks end, not as they start
        ended += [visit for kind, visit in builder.add(sighting) if kind == "end"]
    ended += builder.close_all()
    assert sorted((v.id, tuple(v.sightings)) for v in ended) == sorted(
        (v.id, tuple(v.sightings)) for v in whole
    )
    for visit in whole:
        own = sorted(
            (s for s in sightings if s["sighting_id"] in visit.sightings), key=lambda s: s["start_time"]
        )
        pauses = [b["start_time"] - a["end_time"] for a, b in itertools.pairwise(own)]
        assert all(p <= 600.0 for p in pauses)
        assert (
            visit.arrival_camera == own[0]["camera"] and visit.duration_s == visit.end_time - visit.start_time
        )
    assert len(whole) < len(sightings) and len({v.person_id for v in whole}) == 3


def test_a_visit_is_kept_while_any_of_its_sightings_is() -> None:
    builder = VisitBuilder(60.0)
    builder.add(_sighting("a", "unknown-1", "door", 0.0, 5.0, expires_at=100.0))
    [(_, visit)] = builder.add(_sighting("b", "unknown-1", "drive", 20.0, 30.0, expires_at=200.0))
    assert visit.expires_at == 200.0 and visit.cameras == ["door", "drive"]
    assert builder.close_due(80.0) == [] and builder.close_due(91.0) == [visit] and visit.ended
    named = VisitBuilder(60.0)
    named.add(_sighting("c", "anna", "door", 0.0, 5.0, expires_at=100.0))
    assert named.add(_sighting("d", "anna", "door", 10.0, 15.0, expires_at=None))[0][1].expires_at is None


@pytest.fixture
def service(tmp_path: Path, models_dir: Path) -> Any:
    config = Config.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "models_dir": str(models_dir),
            "cameras": {"door": {"url": "unused.mp4"}, "drive": {"url": "unused.mp4"}},
        }
    )
    opened = IdentityService(config, load_extractors=False)
    yield opened
    opened.close()


def test_visits_are_kept_expired_renamed_exported_and_erased_with_their_identity(
    service: IdentityService, tmp_path: Path
) -> None:
    memory = service.memory
    memory.save_person({"person_id": "anna", "name": "anna", "role": "family", "kind": "person"})
    base = datetime.now().replace(hour=9, minute=0, second=0, microsecond=0).timestamp()
    rows = [
        _sighting(
            "s1", "anna", "door", base, base + 20, identity="anna", identity_class="family", expires_at=None
        ),
        _sighting(
            "s2",
            "anna",
            "drive",
            base + 60,
            base + 90,
            identity="anna",
            identity_class="family",
            expires_at=None,
        ),
        _sighting("s3", "unknown-1", "door", base + 30, base + 50, expires_at=base + 1000),
    ]
    recorder = HistoryRecorder(service.config, memory.log)
    for row in rows:
        memory.add_sighting(row["sighting_id"], {}, row)
        recorder(make_event("end", row["camera"], row["sighting_id"]))
    recorder.tick(base + 10_000)
    kept = {v["person_id"]: v for v in memory.log.visits()}
    assert kept["anna"]["cameras"] == ["door", "drive"] and kept["anna"]["ended"]
    assert kept["anna"]["sightings"] == ["s1", "s2"] and kept["anna"]["expires_at"] is None
    assert list_visits(service, TimeRange(base - 1, base + 100))["visits"][0]["person_id"] == "anna"
    digest = day_digest(service, None)
    assert any(line.startswith("Family: anna ") and "at door to" in line for line in digest["lines"])

    from camd.identity.export import export_file

    export_file(service, "anna", tmp_path / "anna.zip")
    with zipfile.ZipFile(tmp_path / "anna.zip") as bundle:
        exported = json.loads(bundle.read("visits.json"))
        assert json.loads(bundle.read("manifest.json"))["counts"]["visits"] == 1
    assert exported[0]["sightings"] == ["s1", "s2"] and "_parts" not in exported[0]

    memory.log.delete_expired(base + 1001)  # the stranger's retention ends: their visit goes too
    assert [v["person_id"] for v in memory.log.visits()] == ["anna"]
    memory.log.rename("anna", "anna_b")
    assert memory.log.visits()[0]["person_id"] == "anna_b" and memory.log.visits()[0]["name"] == "anna_b"
    memory.log.delete_person("anna_b")
    assert memory.log.visits() == []


# -- the daemon's recorder on MQTT, with Home Assistant -------------------------------------------------


def test_visits_digest_and_home_assistant_entities_on_a_real_broker(
    tmp_path: Path, private_broker: BrokerProcess, models_dir: Path
) -> None:
    broker = private_broker.address
    config = hass_config(tmp_path / "state", broker, cameras=["door", "drive"], tag=None)
    config = Config.model_validate(
        {
            **config.model_dump(mode="json"),
            "models_dir": str(models_dir),
            "history": {"visit_gap_s": 30.0, "digest_every_s": 1.0},
        }
    )
    prefix, discovery = config.mqtt.topic_prefix, config.homeassistant.discovery_prefix
    service = IdentityService(config, load_extractors=False)
    publisher = MqttPublisher(config.mqtt, config.outbox_path)
    bridge = HassBridge(config, publisher)
    clock = [datetime.now().timestamp()]
    try:
        with MqttRecorder(broker, [f"{prefix}/#", f"{discovery}/#"]).start() as seen:
            publisher.start()
            bridge.start()
            bridge.set_people([{"name": "anna", "role": "family", "kind": "person"}])
            recorder = HistoryRecorder(config, service.memory.log, publisher, bridge, clock=lambda: clock[0])
            t = clock[0]
            for sid, who, camera, start, cls in (
                ("e1", "anna", "door", t - 50, "family"),
                ("e2", "anna", "drive", t - 20, "family"),
                ("e3", "unknown-4", "drive", t - 10, "stranger"),
            ):
                row = _sighting(
                    sid,
                    who,
                    camera,
                    start,
                    start + 5,
                    identity=who if cls == "family" else None,
                    identity_class=cls,
                    expires_at=None if cls == "family" else t + 9999,
                )
                service.memory.add_sighting(sid, {}, row)
                recorder(make_event("end", camera, sid))
            clock[0] = t + 60.0
            recorder.tick()
            ends = seen.wait_for(
                lambda ms: sum(1 for m in ms if m.topic == f"{prefix}/visits") >= 4, what="visits new and end"
            )
            visits = [m for m in ends if m.topic == f"{prefix}/visits"]
            assert all(m.qos == 1 and not m.retain for m in visits)
            kinds = [(m.json()["type"], m.json()["visit"]["person_id"]) for m in visits]
            assert kinds.count(("new", "anna")) == 1 and kinds.count(("end", "anna")) == 1
            assert ("new", "unknown-4") in kinds and ("end", "unknown-4") in kinds
            anna_end = next(m.json()["visit"] for m in visits if kinds[visits.index(m)] == ("end", "anna"))
            assert anna_end["cameras"] == ["door", "drive"] and anna_end["departure"] is not None
            last_visit = seen.wait_for_topic(
                f"{prefix}/people/anna/last_visit", lambda m: m.json()["state"] == "end"
            )
            assert last_visit.json()["arrival"] == anna_end["arrival"]
            today = seen.wait_for_topic(f"{prefix}/visitors_today", lambda m: m.json()["count"] == 1)
            assert today.json()["who"] == ["unknown-4"]
            digest = seen.wait_for_topic(f"{prefix}/digest")
            assert digest.retain is False or digest.json()["day"]
            assert any(line.startswith("Family: anna ") for line in digest.json()["lines"])
            assert "1 stranger" in digest.json()["summary"]
            sensor = seen.wait_for_topic(
                f"{discovery}/sensor/{config.homeassistant.node_id}/household_daily_digest/config"
            )
            assert sensor.json()["state_topic"] == f"{prefix}/digest"
            seen.wait_for_topic(
                f"{discovery}/sensor/{config.homeassistant.node_id}/person_anna_last_visit/config"
            )
    finally:
        bridge.stop()
        publisher.stop()
        service.close()
    from tests.support.broker import retained_value

    assert json.loads(retained_value(broker, f"{prefix}/digest"))["counts"] == {"family": 1, "stranger": 1}
