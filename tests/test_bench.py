"""`camd bench --json` on a short real clip: every figure of the speed issue is there and sane.

The real command in a process of its own (its peak RSS is its own), the real detector and identity
models, the real broker for the latency figure. No figure is compared with a speed: that is what
the benchmark reports, not what a test can check on a shared machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camd.vision.detector import native_bf16
from tests.support.broker import BrokerAddress
from tests.support.media import transcode

REPO = Path(__file__).resolve().parents[1]

FIELDS = {
    "a": ["decode_only_fps", "decode_limit_sampled_fps"],
    "b": ["detector_ms_p50", "detector_ms_p95", "detector_batch4_ms_per_frame", "detector_limit_fps",
          "detector_ms", "detector_speedup_vs_opencv"],
    "identity": ["cpu_share_by_stage", "identity_cpu_share", "detector_cpu_share"],
    "c": ["pipeline_fps", "pipeline_ratio_to_limit"],
    "d": ["naive_pipeline_fps", "naive_ratio_to_limit", "motion_gate_speedup", "motion_gate_track_recall"],
    "e": ["latency_p50_s", "latency_p95_s"],
    "f": ["peak_rss_mb"],
    "g": ["stored_bytes_per_hour", "video_bytes_per_hour", "stored_fraction_of_video",
          "stored_bytes_per_track"],
}


@pytest.mark.slow
def test_bench_json_has_every_figure(tmp_path: Path, models_dir: Path, mqtt_broker: BrokerAddress) -> None:
    bikes = models_dir / "demo_bikes_clip" / "bikes.mp4"
    clip = transcode(bikes, tmp_path / "short.mp4", gop=10, max_frames=100)
    result = subprocess.run(
        [sys.executable, "-m", "camd.cli", "bench", str(clip), "--json", "--models-dir", str(models_dir),
         "--mqtt-host", mqtt_broker.host, "--mqtt-port", str(mqtt_broker.port)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])

    missing = {part: [k for k in keys if figures.get(k) is None] for part, keys in FIELDS.items()}
    assert not any(missing.values()), f"missing: {missing}; latency note: {figures.get('latency_note')}"
    assert figures["video_frames"] == 100
    assert figures["frames_processed"] == figures["naive_frames_detected"] == 20
    assert figures["decode_only_fps"] > 0 and figures["detector_ms_p95"] >= figures["detector_ms_p50"] > 0
    assert figures["naive_frames_detected"] >= figures["frames_detected"] > 0
    assert 0.0 <= figures["motion_gate_track_recall"] <= 1.0 and figures["recall_reference_tracks"] >= 1
    assert figures["latency_events"] >= 1 and figures["latency_p95_s"] >= figures["latency_p50_s"] > 0
    assert figures["peak_rss_mb"] > 100  # the models alone are bigger than that
    assert figures["stored_bytes_per_hour"] > 0, "the clip's sightings were stored"
    assert figures["stored_bytes_per_track"] > 0
    assert set(figures["targets"]) >= {"gate_speedup_at_least_3x", "latency_p95_at_most_1s"}
    # Every SSD runtime side by side; the default is OpenVINO bf16 where the CPU has it natively, else f32.
    assert figures["detector_default"] == ("openvino_bf16" if native_bf16() else "openvino_f32")
    assert set(figures["detector_ms"]) >= {"opencv", "openvino_f32", "openvino_int8"}
    assert all(t["p95"] >= t["p50"] > 0 for t in figures["detector_ms"].values())
    assert figures["detector_speedup_vs_opencv"] > 0
    shares = figures["cpu_share_by_stage"]
    assert shares["detector"] > 0 and any(k.startswith("identity_") for k in shares)
    assert 0.9 <= sum(shares.values()) <= 1.1
