"""Does the daemon keep up while `camd adapt` trains? The same camera, alone and beside an adaptation.

    .venv/bin/python benchmarks/adapt_alongside.py [--models-dir var/models] [--seconds 90]

One daemon (real decoder, detector, tracker, identity) on a camera that plays a real clip at its own pace,
looped (a live camera's rate), on an installation whose sighting log holds 32 person tracks with kept
crops (16 reid/train people on two cameras). Phase 1: the daemon alone for --seconds. Phase 2: the same
daemon while `camd adapt` runs as its own process (niced 19, 1 thread, as the config's defaults), for
the same time. Printed per phase: frames the camera delivered and the pipeline took, frames dropped in
the inference queue (the detector fell behind), frame latency p50/p95, and what adapt did.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from camd.adapt.emulate import household_install
from camd.daemon import Daemon
from camd.eval.reid import load_reid

REPO = Path(__file__).resolve().parents[1]


def phase(daemon: Daemon, seconds: float, adapt: list[str] | None) -> dict[str, Any]:
    stats = daemon.pipelines["street"].stats
    frames, dropped = stats.frames, stats.dropped
    stats.latency_s.clear()
    started = time.monotonic()
    result = None
    if adapt is not None:
        done = subprocess.run(adapt, cwd=REPO, capture_output=True, text=True, timeout=seconds * 10)
        result = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-400:]}
    remaining = seconds - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)
    elapsed = time.monotonic() - started
    latency = np.array(stats.latency_s) if stats.latency_s else np.zeros(1)
    return {"seconds": round(elapsed, 1), "frames": stats.frames - frames, "dropped": stats.dropped - dropped,
            "fps": round((stats.frames - frames) / elapsed, 2),
            "latency_p50_ms": round(float(np.percentile(latency, 50)) * 1000, 1),
            "latency_p95_ms": round(float(np.percentile(latency, 95)) * 1000, 1),
            "adapt": None if result is None else {k: result.get(k) for k in ("replaced", "reason", "train")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seconds", type=float, default=90.0)
    args = parser.parse_args()
    reid = load_reid(args.data / "reid" / "train")
    with tempfile.TemporaryDirectory(prefix="camd-adapt-alongside-") as work:
        clip = args.data / "video" / "vtest.avi"
        config_file, config = household_install(Path(work), args.models_dir, clip, reid, "{min_tracks: 8}")
        daemon = Daemon(config)
        thread = threading.Thread(target=lambda: daemon.run(install_signals=False), daemon=True)
        thread.start()
        while "street" not in daemon.pipelines or daemon.pipelines["street"].stats.frames < 10:
            time.sleep(0.2)
        adapt = [sys.executable, "-m", "camd.cli", "adapt", "--config", str(config_file), "--json",
                 "--max-minutes", str(args.seconds / 60.0 * 0.6)]  # fmt: skip
        try:
            alone = phase(daemon, args.seconds, None)
            beside = phase(daemon, args.seconds, adapt)
        finally:
            daemon.stop()
            thread.join(30)
    print(json.dumps({"alone": alone, "beside_camd_adapt": beside}, indent=1))


if __name__ == "__main__":
    main()
