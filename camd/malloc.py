"""glibc's allocator, set up for a long-running multi-threaded image pipeline.

Every camera thread allocates and frees frame-sized buffers (hundreds of KB) all day. glibc raises its
mmap threshold each time a large mmapped block is freed (up to 32 MB), so after the first frames these
buffers come from per-thread heap arenas instead, which fragment and are seldom given back: the
daemon's RSS crept up by ~150 MB an hour in the soak although nothing leaked (tracemalloc showed
Python's own memory flat). A fixed mmap threshold keeps large buffers in mmap (returned to the system
when freed) and fewer arenas bound what fragmentation can hold. docs/performance.md has the figures.

Settings a user exported (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_) win. Off glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

ARENA_MAX = 2
MMAP_THRESHOLD = 128 * 1024  # glibc's starting value, kept fixed


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost",
    )]  # fmt: skip


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl, macOS: not glibc
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    if hasattr(libc, "mallinfo2"):  # glibc >= 2.33
        libc.mallinfo2.restype = _MallInfo2
    return libc


def tune_allocator() -> dict[str, int]:
    """Apply the settings above (call before the camera threads start); returns what was set."""
    libc = _libc()
    if libc is None:
        return {}
    applied: dict[str, int] = {}
    for env, parameter, value in (
        ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        ("MALLOC_ARENA_MAX", M_ARENA_MAX, ARENA_MAX),
    ):
        if env in os.environ:
            continue  # the user's own setting, read by glibc at start
        if libc.mallopt(parameter, value) == 1:
            applied[env] = value
    log.debug("allocator: %s", applied or "left as it was")
    return applied


def heap_stats() -> dict[str, float]:
    """glibc's own account, all arenas (MB): heap in use, heap free but held, mmapped blocks; {} off glibc.

    RSS growing with `held_free` is fragmentation; with `in_use` it is memory something keeps; with
    neither, memory not taken through malloc at all.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return {}
    info = libc.mallinfo2()
    return {"in_use": info.uordblks / 1e6, "held_free": info.fordblks / 1e6, "mmapped": info.hblkhd / 1e6}


def give_back() -> None:
    """Return free heap memory at the top of each arena to the system (malloc_trim)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
