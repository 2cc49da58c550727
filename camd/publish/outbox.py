"""A bounded, durable FIFO on disk for messages that must reach the broker.

Frigate drops an event when MQTT is down; camd writes it here first and deletes it only once the
broker has acknowledged it. SQLite in WAL mode: every put/ack is a transaction, so a killed
process loses nothing it had put. synchronous=NORMAL survives a process kill; a power cut may
roll back the last few puts (FULL would fsync on every event, costly on an SD card).

One process owns an outbox at a time (a lock file enforces it); inside that process any thread
may put, peek and ack.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from camd.private import create_private

log = logging.getLogger(__name__)

# At most one "dropped" warning per interval, so a long outage does not flood the log.
DROP_WARNING_INTERVAL_S = 60.0
WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: never reused, even after acks empty the table
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped', 0);
"""


class OutboxError(RuntimeError):
    """The outbox file cannot be used (corrupt, locked by another process, or closed)."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    seq: int  # increases monotonically over the life of the file
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float  # wall-clock seconds when it was put


class Outbox:
    """Durable FIFO of MQTT messages. Beyond ``max_items`` the oldest are dropped and counted:
    a larger bound rides out a longer broker outage but costs disk (an event is ~1-2 KB)."""

    def __init__(self, path: Path, max_items: int = 100_000) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.path = Path(path)
        self.max_items = max_items
        self._lock = threading.Lock()
        self._last_drop_warning = 0.0
        self._dropped_since_warning = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._acquire_process_lock()
        try:
            self._db = self._open_db()
            self._count = int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
            self._dropped = int(self._db.execute("SELECT value FROM meta WHERE key='dropped'").fetchone()[0])
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._closed = False

    def _acquire_process_lock(self) -> int:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutboxError(
                f"outbox {self.path} is in use by another process (is another camd running with the "
                f"same state_dir?)"
            ) from None
        return fd

    def _open_db(self) -> sqlite3.Connection:
        # Create the file owner-only before SQLite does; its -wal/-shm files copy these permissions.
        create_private(self.path)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so each put is exactly one transaction.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # After a checkpoint the WAL is truncated to this size, so a burst does not leave a big file.
            db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise OutboxError(
                f"outbox {self.path} is not a usable SQLite database ({exc}); move it aside to start "
                f"with an empty outbox (its undelivered events would be lost)"
            ) from exc
        return db

    def put(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Append a message; returns its sequence id. Drops the oldest beyond max_items."""
        if not topic or "#" in topic or "+" in topic:
            raise ValueError(f"cannot publish to topic {topic!r}: it must be non-empty and have no wildcards")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        if not isinstance(payload, bytes | bytearray):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        with self._lock:
            self._check_open()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "INSERT INTO items (topic, payload, qos, retain, created) VALUES (?, ?, ?, ?, ?)",
                    (topic, bytes(payload), qos, int(retain), time.time()),
                )
                excess = self._count + 1 - self.max_items
                if excess > 0:
                    self._db.execute(
                        "DELETE FROM items WHERE seq IN (SELECT seq FROM items ORDER BY seq LIMIT ?)",
                        (excess,),
                    )
                    self._db.execute("UPDATE meta SET value = value + ? WHERE key='dropped'", (excess,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count += 1 - max(excess, 0)
            if excess > 0:
                self._dropped += excess
                self._warn_dropped(excess)
            seq = cursor.lastrowid
        assert seq is not None
        return seq

    def _warn_dropped(self, n: int) -> None:
        self._dropped_since_warning += n
        now = time.monotonic()
        if now - self._last_drop_warning >= DROP_WARNING_INTERVAL_S:
            log.warning(
                "MQTT outbox full (%d messages): dropped the %d oldest undelivered message(s) "
                "(%d dropped in total); is the broker down?",
                self.max_items, self._dropped_since_warning, self._dropped,
            )
            self._last_drop_warning = now
            self._dropped_since_warning = 0

    def peek(self, limit: int, after: int = 0) -> list[OutboxItem]:
        """Up to ``limit`` oldest messages with seq > ``after``, oldest first; nothing is removed."""
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT seq, topic, payload, qos, retain, created FROM items"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [OutboxItem(seq, topic, bytes(payload), qos, bool(retain), created)
                for seq, topic, payload, qos, retain, created in rows]

    def ack(self, seq: int) -> bool:
        """Delete a delivered message. False if it was not there (already acked or dropped)."""
        with self._lock:
            self._check_open()
            deleted = self._db.execute("DELETE FROM items WHERE seq = ?", (seq,)).rowcount
            self._count -= deleted
        return deleted > 0

    def __len__(self) -> int:
        return self._count

    @property
    def dropped(self) -> int:
        """Messages dropped because the outbox was full, over the life of the file."""
        return self._dropped

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"outbox {self.path} is closed")

    def close(self) -> None:
        """Flush and release the file; what is undelivered stays for the next open. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._db.close()
            os.close(self._lock_fd)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
