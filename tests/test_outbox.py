"""The durable outbox: FIFO, bound, dropped counter, persistence across reopen and process kill."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from camd.publish.outbox import Outbox, OutboxError

REPO = Path(__file__).resolve().parents[1]


def test_fifo_order_and_ack(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3", max_items=100) as box:
        seqs = [box.put("camd/events", f"e{i}".encode()) for i in range(10)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 10
        assert len(box) == 10
        assert [item.payload for item in box.peek(3)] == [b"e0", b"e1", b"e2"]
        assert len(box) == 10, "peek must not remove"
        assert box.ack(seqs[0]) is True
        assert box.ack(seqs[0]) is False, "second ack of the same item"
        assert [item.payload for item in box.peek(2)] == [b"e1", b"e2"]
        assert [item.payload for item in box.peek(2, after=seqs[5])] == [b"e6", b"e7"]
        item = box.peek(1)[0]
        assert (item.topic, item.qos, item.retain) == ("camd/events", 1, False)
        assert len(box) == 9


def test_sequence_ids_never_reused_after_emptying(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as box:
        first = box.put("t", b"a")
        box.ack(first)
        assert len(box) == 0
    with Outbox(path) as box:
        assert box.put("t", b"b") > first


def test_bound_drops_oldest_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.sqlite3"
    with caplog.at_level(logging.WARNING, logger="camd.publish.outbox"), Outbox(path, max_items=10) as box:
        for i in range(25):
            box.put("t", str(i).encode())
        assert len(box) == 10
        assert box.dropped == 15
        assert [int(item.payload) for item in box.peek(100)] == list(range(15, 25))
    warnings = [r for r in caplog.records if "outbox full" in r.getMessage()]
    assert len(warnings) == 1, "the dropped warning is rate-limited, not one per drop"
    with Outbox(path, max_items=10) as box:
        assert box.dropped == 15, "the dropped counter is persisted"
        assert len(box) == 10


def test_persists_across_reopen_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.sqlite3"
    with Outbox(path) as box:
        box.put("camd/events", b'{"id": 1}', qos=1)
        box.put("camd/state", b"on", qos=0, retain=True)
        wal = path.with_name(path.name + "-wal")
        assert wal.exists(), "WAL mode"
        for file in (path, wal):
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    with Outbox(path) as box:
        items = box.peek(10)
        assert [(i.topic, i.payload, i.qos, i.retain) for i in items] == [
            ("camd/events", b'{"id": 1}', 1, False),
            ("camd/state", b"on", 0, True),
        ]


def test_survives_sigkill_mid_stream(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    script = (
        "import sys\nfrom pathlib import Path\nfrom camd.publish.outbox import Outbox\n"
        "box = Outbox(Path(sys.argv[1]))\n"
        "for i in range(1_000_000):\n"
        "    box.put('camd/events', str(i).encode())\n"
        "    if i == 200: print('ready', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with Outbox(path) as box:
        payloads = [int(item.payload) for item in box.peek(2_000_000)]
    assert len(payloads) > 200
    assert payloads == list(range(len(payloads))), "every committed put is there, in order, no gaps"


def test_thread_safe_concurrent_puts_and_acks(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3") as box:
        per_thread = 200

        def producer(name: str) -> None:
            for i in range(per_thread):
                box.put(f"camd/{name}", str(i).encode())

        threads = [threading.Thread(target=producer, args=(f"cam{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        acked = 0
        while any(t.is_alive() for t in threads) or len(box):
            for item in box.peek(50):
                acked += box.ack(item.seq)
        for thread in threads:
            thread.join()
        assert acked == 4 * per_thread
        assert len(box) == 0


def test_second_owner_refused_and_bad_input_explained(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as box:
        with pytest.raises(OutboxError, match="in use by another process"):
            Outbox(path)
        with pytest.raises(ValueError, match="wildcards"):
            box.put("camd/#", b"x")
        with pytest.raises(ValueError, match="qos"):
            box.put("camd/events", b"x", qos=3)
        with pytest.raises(TypeError, match="bytes"):
            box.put("camd/events", "text")  # type: ignore[arg-type]
    with pytest.raises(OutboxError, match="closed"):
        box.put("camd/events", b"x")
    with pytest.raises(ValueError, match="max_items"):
        Outbox(tmp_path / "other.sqlite3", max_items=0)


def test_corrupt_file_gives_actionable_error(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError, match="move it aside"):
        Outbox(path)
