"""Search latency over a large sighting log, visit-building cost per sighting, bytes per visit.

    PYTHONPATH=. .venv/bin/python benchmarks/history.py --sightings 100000 --models-dir var/models \
        [--data ../shared/data] [--json]

Vectors are real: every person crop of ../shared/data/reid/train (62 people x 16 crops, two cameras)
embedded by camd's own body model (OSNet by default) and clothing colour descriptor, as the daemon
stores them. N sightings are generated from them: each picks a crop's vectors (plus 1% noise, so no
two are equal), a camera of four, a time over 30 days, and an identity (five family members, two
visitors, strangers unknown-1..2000) with the class that goes with it; a twentieth are vehicles (no
body vector). They are written to a real sighting log (SQLite, camd/identity/sightings.py) through an
IdentityService's memory, as the daemon writes them.

Then each query (camd/history/search.py, the code `camd search` and the API run) is timed --repeat
times on the warm log: its p50 and p95 in ms. Visits: the daemon's recorder path (read the ended
track's sighting, join it, store the visit) per sighting, and the bare VisitBuilder per sighting; bytes
per visit: the log file's growth when the visits are stored, divided by their number (SQLite pages
included), beside the payload's own length.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camd.config import Config
from camd.history.search import SearchQuery, search
from camd.history.visits import VisitBuilder, build_visits
from camd.identity.service import IdentityService

CAMERAS = ("front_door", "driveway", "garden", "back_door")
FAMILY = ("anna", "ben", "clara", "dev", "eli")
VISITORS = ("gardener", "nanny")
DAY = 86400.0


def real_vectors(service: IdentityService, data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(body, colour) rows of every reid/train crop, embedded by the service's own models."""
    crops = sorted((data / "reid" / "train").glob("*/*.png"))
    if not crops:
        sys.exit(f"no crops under {data / 'reid' / 'train'}: give --data (the shared data folder)")
    bodies, colours = [], []
    for path in crops:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        body, colour = service.embed_crop("person", image)
        if body is not None and colour is not None:
            bodies.append(body)
            colours.append(colour)
    return np.array(bodies, np.float32), np.array(colours, np.float32)


def identity_for(rng: random.Random) -> tuple[str, str | None, str]:
    roll = rng.random()
    if roll < 0.45:
        who = rng.choice(FAMILY)
        return who, who, "family"
    if roll < 0.55:
        who = rng.choice(VISITORS)
        return who, who, "visitor"
    stranger = f"unknown-{rng.randint(1, 2000)}"
    return stranger, None, "stranger"


def generate(
    service: IdentityService, bodies: np.ndarray, colours: np.ndarray, count: int, now: float
) -> float:
    """Write `count` sightings; returns seconds taken."""
    rng = random.Random(17)
    noise = np.random.default_rng(17)
    log = service.memory.log
    started = time.perf_counter()
    for i in range(count):
        end = now - rng.uniform(0, 30 * DAY)
        start = end - rng.uniform(1, 40)
        sid = f"{end:.6f}-{i:06x}"
        camera = rng.choice(CAMERAS)
        if rng.random() < 0.05:
            pid = f"vehicle-{rng.randint(1, 100)}"
            payload = {
                "label": "car",
                "person_id": pid,
                "identity": None,
                "identity_class": "unknown_vehicle",
            }
            vectors: dict[str, np.ndarray] = {}
        else:
            pid, name, cls = identity_for(rng)
            payload = {"label": "person", "person_id": pid, "identity": name, "identity_class": cls}
            k = rng.randrange(len(bodies))
            body = bodies[k] + noise.normal(0, 0.01 * float(np.abs(bodies[k]).mean()), bodies.shape[1])
            colour = np.clip(colours[k] + noise.normal(0, 0.005, colours.shape[1]), 0, None)
            vectors = {
                "body": body.astype(np.float32),
                "colour": (colour / np.linalg.norm(colour)).astype(np.float32),
            }
        payload.update(
            event_id=sid,
            camera=camera,
            track_id=i,
            start_time=start,
            end_time=end,
            box=[10, 20, 110, 320],
            top_score=0.9,
            frames=20,
            crop=None,
            confidence=0.9,
            evidence={"face": None, "body": 0.9, "gait": None},
            global_id=pid,
            expires_at=None if payload["identity"] else end + 30 * DAY,
        )
        log.add(sid, vectors, payload, service.memory.body_space)
    return time.perf_counter() - started


def visit_bytes(path: Path) -> tuple[int, int]:
    """(pages, their used bytes) of the visits table and its indexes, read by SQLite's dbstat on a
    second connection (WAL: it sees what the log committed)."""
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        pages, used = db.execute(
            "SELECT SUM(pgsize), SUM(pgsize - unused) FROM dbstat "
            "WHERE name = 'visits' OR name LIKE 'visits_%' OR name = 'sqlite_autoindex_visits_1'"
        ).fetchone()
    finally:
        db.close()
    return int(pages or 0), int(used or 0)


def timed(action: Any, repeat: int) -> tuple[dict[str, float], Any]:
    """p50 / p95 wall time and p50 CPU time of this process (on a shared machine the wall time
    includes waiting for a core; the CPU time is what the query costs)."""
    walls, cpus, answer = [], [], None
    action()  # warm
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        answer = action()
        cpus.append((time.process_time() - cpu) * 1000.0)
        walls.append((time.perf_counter() - wall) * 1000.0)
    walls.sort()
    p95 = walls[min(len(walls) - 1, round(0.95 * (len(walls) - 1)))]
    return {
        "p50_ms": round(statistics.median(walls), 1),
        "p95_ms": round(p95, 1),
        "cpu_p50_ms": round(statistics.median(cpus), 1),
    }, answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sightings", type=int, default=100_000)
    parser.add_argument("--models-dir", default="var/models")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="keep the log here (default: a temp dir)"
    )
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    state = args.state_dir or Path(tempfile.mkdtemp(prefix="camd-history-bench-"))
    config = Config.model_validate(
        {
            "state_dir": str(state),
            "models_dir": args.models_dir,
            "cameras": {name: {"url": "unused.mp4"} for name in CAMERAS},
        }
    )
    service = IdentityService(config)
    out: dict[str, Any] = {
        "sightings": args.sightings,
        "body_model": service.body_model.describe(),
        "load_average": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    try:
        now = time.time()
        if service.memory.log.count() < args.sightings:
            bodies, colours = real_vectors(service, args.data)
            out["real_crops"] = len(bodies)
            seconds = generate(service, bodies, colours, args.sightings - service.memory.log.count(), now)
            out["write_ms_per_sighting"] = round(seconds * 1000.0 / args.sightings, 3)
        log_bytes = Path(config.sightings_path).stat().st_size
        out["log_bytes_per_sighting"] = round(log_bytes / args.sightings)
        memory = service.memory
        anchor = memory.log.select("json_extract(payload, '$.label') = 'person'", (), limit=1)[0][
            "sighting_id"
        ]
        day_ago = memory.log.select("1", (), limit=1)[0]["end_time"] - DAY  # the log's last day
        queries = {
            "newest 50": SearchQuery.build(),
            "camera, last 24 h": SearchQuery.build(camera="front_door", after=day_ago),
            "person (family), all time": SearchQuery.build(person="anna"),
            "class stranger, last 24 h": SearchQuery.build(classes=["stranger"], after=day_ago),
            "red top, last 24 h": SearchQuery.build(wearing=["red top"], after=day_ago),
            "red top, all time": SearchQuery.build(wearing=["red top"]),
            "more like this, last 24 h": SearchQuery.build(like=anchor, after=day_ago),
            "more like this, all time": SearchQuery.build(like=anchor),
            "more like this + black trousers, all time": SearchQuery.build(
                like=anchor, wearing=["black trousers"]
            ),
        }
        out["search"] = {}
        for name, query in queries.items():
            figures, answer = timed(lambda q=query: search(memory, q, CAMERAS), args.repeat)
            out["search"][name] = {
                **figures,
                "candidates": answer["candidates"],
                "results": len(answer["results"]),
            }

        # Visits: the daemon's path, one ended track at a time, on the last day's sightings.
        from camd.history.live import HistoryRecorder
        from tests.support.hass import make_event

        day = memory.log.select("end_time >= ?", (day_ago,))
        day.sort(key=lambda s: s["end_time"])
        recorder = HistoryRecorder(config, memory.log)
        started, cpu = time.perf_counter(), time.process_time()
        for sighting in day:
            recorder(make_event("end", sighting["camera"], sighting["sighting_id"]))
        recorder.tick(now + DAY)
        elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu
        stored = memory.log.visits()
        disk, content = visit_bytes(config.sightings_path)
        payload = statistics.mean(len(json.dumps(v)) for v in stored)
        out["visits"] = {
            "sightings": len(day),
            "visits": len(stored),
            "recorder_ms_per_sighting": round(elapsed * 1000.0 / max(1, len(day)), 3),
            "recorder_cpu_ms_per_sighting": round(cpu_elapsed * 1000.0 / max(1, len(day)), 3),
            "bytes_per_visit_on_disk": round(disk / max(1, len(stored))),
            "stored_bytes_per_visit": round(content / max(1, len(stored))),
            "payload_bytes_per_visit": round(payload),
            "sightings_per_visit": round(len(day) / max(1, len(stored)), 2),
        }
        every = memory.log.select("1", ())
        started = time.perf_counter()
        built = build_visits(every, config.history.visit_gap_s)
        out["visits"]["builder_us_per_sighting"] = round(
            (time.perf_counter() - started) * 1e6 / len(every), 2
        )
        out["visits"]["visits_from_all"] = len(built)
        assert isinstance(VisitBuilder(1.0), VisitBuilder)
    finally:
        service.close()
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(
        f"{out['sightings']} sightings from {out.get('real_crops', 'the kept log of')} real crops "
        f"({out['body_model']}); "
        f"log {out['log_bytes_per_sighting']} bytes a sighting"
    )
    for name, row in out["search"].items():
        print(
            f"  {name:<44} p50 {row['p50_ms']:>7.1f} ms  p95 {row['p95_ms']:>7.1f} ms  "
            f"cpu {row['cpu_p50_ms']:>7.1f} ms  "
            f"candidates {row['candidates']}, results {row['results']}"
        )
    v = out["visits"]
    print(f"visits: {v['sightings']} sightings of the last day -> {v['visits']} visits")
    print(
        f"  recorder {v['recorder_ms_per_sighting']} ms a sighting; builder {v['builder_us_per_sighting']} us"
    )
    print(
        f"  {v['bytes_per_visit_on_disk']} bytes a visit on disk, "
        f"{v['stored_bytes_per_visit']} used "
        f"({v['payload_bytes_per_visit']} of JSON)"
    )
    print(f"state: {state}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("CAMD_LOG", "warning")
    raise SystemExit(main())
