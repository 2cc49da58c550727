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

from camd.malloc import ARENA_MAX, MMAP_THRESHOLD, _libc, heap_stats

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
    before = heap_stats()
    block = bytearray(64 * 1024 * 1024)  # far above any mmap threshold: one mmapped block
    during = heap_stats()
    del block
    assert set(before) == {"in_use", "held_free", "mmapped"}
    assert during["mmapped"] - before["mmapped"] >= 64.0
    assert heap_stats()["mmapped"] < during["mmapped"]
