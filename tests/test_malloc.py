"""The allocator settings the daemon applies at start (camd/malloc.py): applied on glibc, and a
user's own MALLOC_* environment is left alone. Their effect on RSS is a soak figure
(docs/performance.md), not a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camd.malloc import ARENA_MAX, MMAP_THRESHOLD, _libc

REPO = Path(__file__).resolve().parents[1]
PROBE = (
    "import json; from camd.malloc import tune_allocator, give_back; "
    "give_back(); print(json.dumps(tune_allocator()))"
)

pytestmark = pytest.mark.skipif(_libc() is None, reason="not glibc: camd leaves the allocator alone")


def _applied(env: dict[str, str]) -> dict[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return json.loads(done.stdout)


def test_the_daemon_settings_are_applied_on_glibc() -> None:
    assert _applied({}) == {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD, "MALLOC_ARENA_MAX": ARENA_MAX}


def test_a_users_own_malloc_settings_win() -> None:
    assert _applied({"MALLOC_ARENA_MAX": "4"}) == {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD}
    assert _applied({"MALLOC_ARENA_MAX": "4", "MALLOC_MMAP_THRESHOLD_": "65536"}) == {}


def test_heap_stats_account_for_a_block_while_it_lives() -> None:
    # In a fresh process: after a whole suite's in-process daemons (GBs of mmapped blocks, one mapping
    # each) glibc may serve even a 64 MB block from the heap, as CI saw once.
    script = (
        "import json\nfrom camd.malloc import heap_stats\n"
        "before = heap_stats()\n"
        "block = bytearray(64 * 1024 * 1024)  # far above any mmap threshold: one mmapped block\n"
        "during = heap_stats()\n"
        "del block\n"
        "print(json.dumps([before, during, heap_stats()]))\n"
    )
    repo = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": repo})  # fmt: skip
    assert done.returncode == 0, done.stderr
    before, during, after = json.loads(done.stdout)
    assert set(before) == {"in_use", "held_free", "mmapped"}
    assert during["mmapped"] - before["mmapped"] >= 64.0
    assert after["mmapped"] < during["mmapped"]
