"""The sighting log: one row per finished track, on disk in SQLite beside the Qdrant store.

Sightings are history, not something the matcher searches by vector: they are read by id (enroll
from a sighting, correct it), by person (people show, export, the same-time check for strangers) and
by expiry (retention). So they live in an indexed SQLite file, not in Qdrant: Qdrant's embedded mode
keeps every point it ever held in RAM until the process restarts (deleted points included), and a
daemon writes thousands of sightings a day. Here memory stays flat however long camd runs, and a
sighting costs its bytes on disk only.

Vectors are kept small: appearance vectors (body, vehicle: 1280-d, the bulk of a sighting) as 8-bit
integers with one float32 scale (1.3 KB instead of 2.6 as float16; cosine to the original > 0.9999),
the short ones (face 128-d, colour 72-d) as float16. A sighting's vectors become prototypes only
through enrollment or a correction, where that precision is far below the spread of real
embeddings. Rows written before 8-bit vectors existed stay float16 and read as before.
Body vectors depend on the body backbone, so each is stored under its body space;
the other vectors (face, colour, vehicle) under "" (any space).

Strangers' looks (strangers.py) are rows here too: which sighting's vectors link which stranger, and
until when; the memory reads the live ones into RAM when it opens.

Durability: WAL journal, a transaction per write; a process killed mid-write leaves the previous
state (SQLite's own guarantee). The file is owner-only (biometric data).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from camd.identity.strangers import Look
from camd.private import create_private

ANY_SPACE = ""  # vectors that do not depend on the body backbone
SPACE_DEPENDENT = frozenset({"body"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sightings (
    id TEXT PRIMARY KEY,
    person_id TEXT,
    end_time REAL,
    expires_at REAL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sightings_person ON sightings (person_id, end_time);
CREATE INDEX IF NOT EXISTS sightings_expiry ON sightings (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS sighting_vectors (
    sighting_id TEXT NOT NULL REFERENCES sightings (id) ON DELETE CASCADE,
    space TEXT NOT NULL,
    name TEXT NOT NULL,
    data BLOB NOT NULL,
    encoding TEXT NOT NULL DEFAULT 'f2',  -- 'f2': float16; 'q8': float32 scale + int8 (see _encode)
    PRIMARY KEY (sighting_id, space, name)
);
-- A stranger's look (strangers.py): whose sighting's vectors link a returning stranger, and until when.
CREATE TABLE IF NOT EXISTS stranger_looks (
    sighting_id TEXT PRIMARY KEY REFERENCES sightings (id) ON DELETE CASCADE,
    person_id TEXT NOT NULL,
    camera TEXT,
    learned_at REAL NOT NULL,
    face_until REAL,
    look_until REAL,
    shape TEXT
);
CREATE INDEX IF NOT EXISTS stranger_looks_person ON stranger_looks (person_id);
-- Search by time (camd/history): the newest sightings of a range without reading the others.
CREATE INDEX IF NOT EXISTS sightings_time ON sightings (end_time);
-- Visits (camd/history/visits.py): one identity's sightings on any camera within a gap; kept, expired,
-- renamed and erased with that identity's sightings.
CREATE TABLE IF NOT EXISTS visits (
    id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    start_time REAL NOT NULL,
    end_time REAL NOT NULL,
    expires_at REAL,
    ended INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS visits_person ON visits (person_id, start_time);
CREATE INDEX IF NOT EXISTS visits_time ON visits (start_time);
CREATE INDEX IF NOT EXISTS visits_expiry ON visits (expires_at) WHERE expires_at IS NOT NULL;
"""
# Until when a look links at all: the later of its two parts.
_LOOK_LINKS_UNTIL = "MAX(COALESCE(face_until, 0), COALESCE(look_until, 0))"


# Vectors this long are stored in 8 bits: the appearance backbones' (1280-d); faces and colours
# are short, and a face's distances are compared against fixed thresholds, so they keep float16.
QUANTISE_FROM_DIM = 512


def _encode(vector: np.ndarray) -> tuple[str, bytes]:
    """(encoding, bytes): 'q8' for long vectors (a float32 scale, then int8 values), else 'f2'."""
    flat = np.asarray(vector, dtype=np.float32).ravel()
    if flat.size < QUANTISE_FROM_DIM:
        return "f2", flat.astype("<f2").tobytes()
    peak = float(np.abs(flat).max())
    step = peak / 127.0 if peak > 0 else 1.0
    values = np.clip(np.rint(flat / step), -127, 127).astype(np.int8)
    # The scale gives the decoded vector the original's length, not just its direction: a unit
    # appearance vector comes back unit (to float32 precision), as a prototype learned from it must
    # be (Qdrant would otherwise normalise it on some paths and not on others).
    length = float(np.linalg.norm(values.astype(np.float32)))
    scale = float(np.linalg.norm(flat)) / length if length > 0 else 1.0
    return "q8", np.float32(scale).astype("<f4").tobytes() + values.tobytes()


VECTOR_CHUNK = 8192  # rows decoded at once by a search (8192 x 512 float32: 16 MB)


def _decoded_chunks(rows: list[Any], chunk: int) -> Iterator[tuple[list[str], np.ndarray]]:
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        size, encoding = len(part[0][2]), part[0][1]
        if all(r[1] == encoding and len(r[2]) == size for r in part):
            yield [r[0] for r in part], _decode_rows(encoding, b"".join(r[2] for r in part), len(part))
            continue
        decoded = [_decode(e, data) for _, e, data in part]  # old float16 rows among 8-bit ones
        dim = Counter(v.size for v in decoded).most_common(1)[0][0]
        keep = [i for i, v in enumerate(decoded) if v.size == dim]
        yield [part[i][0] for i in keep], np.stack([decoded[i] for i in keep])


def _decode_rows(encoding: str, data: bytes, count: int) -> np.ndarray:
    """`count` vectors of one encoding and length, concatenated, as a (count, dim) float32 matrix."""
    if encoding == "q8":
        raw = np.frombuffer(data, dtype=np.uint8).reshape(count, -1)
        scales = raw[:, :4].copy().view("<f4").astype(np.float32)
        values = raw[:, 4:].view(np.int8).astype(np.float32)
        values *= scales  # in place: no second (count, dim) temporary
        return values
    return np.frombuffer(data, dtype="<f2").reshape(count, -1).astype(np.float32)


def _decode(encoding: str, data: bytes) -> np.ndarray:
    if encoding == "q8":
        scale = float(np.frombuffer(data[:4], dtype="<f4")[0])
        return np.frombuffer(data[4:], dtype=np.int8).astype(np.float32) * scale
    return np.frombuffer(data, dtype="<f2").astype(np.float32)


class SightingLog:
    """Sightings by id, by person and by expiry; thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        create_private(self.path)  # owner-only before the first byte
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        # 16 KB pages: a sighting's vectors (2.6 KB with float16 bodies, ~1.7 KB now) leave much of a
        # 4 KB page unused; larger pages pack them (4.1 instead of 5.1 KB a float16 sighting). New
        # files only.
        self._db.execute("PRAGMA page_size=16384")
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: durable across a process kill (the WAL is in the OS); fsync only at checkpoints.
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Each sighting rewrites a few 4 KB pages; checkpoint every 200 pages (not SQLite's 1000) and
        # truncate the WAL after, so it stays well under 1 MB instead of sitting at 4 MB.
        self._db.execute("PRAGMA wal_autocheckpoint=200")
        self._db.execute("PRAGMA journal_size_limit=1048576")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(sighting_vectors)")}
        if "encoding" not in columns:  # a log written before 8-bit vectors: its rows are float16
            self._db.execute("ALTER TABLE sighting_vectors ADD COLUMN encoding TEXT NOT NULL DEFAULT 'f2'")
        for suffix in ("-wal", "-shm"):
            sidecar = Path(f"{self.path}{suffix}")
            if sidecar.exists():
                os.chmod(sidecar, 0o600)

    # -- writing -----------------------------------------------------------------------------------

    def add(
        self, sighting_id: str, vectors: dict[str, np.ndarray], payload: dict[str, Any], space: str
    ) -> None:
        """Store (or replace) a sighting: its payload and each vector, body ones under `space`."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM sightings WHERE id = ?", (sighting_id,))
            self._insert("INSERT", sighting_id, vectors, payload, space)

    def update(self, sighting_id: str, changes: dict[str, Any]) -> bool:
        """Merge `changes` into a sighting's payload; False when there is no such sighting."""
        with self._lock, self._transaction():
            found = self._db.execute("SELECT payload FROM sightings WHERE id = ?", (sighting_id,)).fetchone()
            if found is None:
                return False
            payload = {**json.loads(found[0]), **changes}
            self._db.execute(
                "UPDATE sightings SET person_id = ?, end_time = ?, expires_at = ?, payload = ? WHERE id = ?",
                (*_columns(payload), sighting_id),
            )
            return True

    def rename(self, old: str, new: str) -> int:
        """Every sighting of `old` now names `new`; returns how many."""
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "UPDATE sightings SET person_id = ?, "
                "payload = json_set(payload, '$.person_id', ?, '$.name', ?) WHERE person_id = ?",
                (new, new, new, old),
            )
            self._db.execute("UPDATE stranger_looks SET person_id = ? WHERE person_id = ?", (new, old))
            self._db.execute(
                "UPDATE visits SET person_id = ?, payload = json_set(payload, '$.person_id', ?, '$.name', ?) "
                "WHERE person_id = ?", (new, new, new, old),
            )  # fmt: skip
            return cursor.rowcount

    def merge(
        self, sighting_id: str, vectors: dict[str, np.ndarray], payload: dict[str, Any], space: str
    ) -> None:
        """Add what is missing of a sighting, keeping what is there (moving an older store's sightings
        in: the same sighting may come from several body spaces' collections)."""
        with self._lock, self._transaction():
            self._insert("INSERT OR IGNORE", sighting_id, vectors, payload, space)

    def _insert(
        self, verb: str, sighting_id: str, vectors: dict[str, np.ndarray], payload: dict[str, Any], space: str
    ) -> None:
        payload = {**payload, "sighting_id": sighting_id}
        self._db.execute(
            f"{verb} INTO sightings (id, person_id, end_time, expires_at, payload) VALUES (?, ?, ?, ?, ?)",
            (sighting_id, *_columns(payload)),
        )
        self._db.executemany(
            f"{verb} INTO sighting_vectors (sighting_id, space, name, encoding, data) VALUES (?, ?, ?, ?, ?)",
            [(sighting_id, space if name in SPACE_DEPENDENT else ANY_SPACE, name, *_encode(vector))
             for name, vector in vectors.items()],
        )  # fmt: skip

    def delete_person(self, person_id: str) -> list[dict[str, Any]]:
        """Delete every sighting (and visit) of a person; returns the sightings' payloads (for crops)."""
        return self._delete("person_id = ?", (person_id,))

    def delete_expired(self, now: float) -> list[dict[str, Any]]:
        """Delete every sighting (and visit) whose retention ended before `now`; returns the sightings'
        payloads."""
        return self._delete("expires_at IS NOT NULL AND expires_at < ?", (now,))

    def _delete(self, where: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self._lock, self._transaction():
            rows = self._db.execute(f"SELECT payload FROM sightings WHERE {where}", args)
            gone = [json.loads(row[0]) for row in rows]
            self._db.execute(f"DELETE FROM sightings WHERE {where}", args)
            self._db.execute(f"DELETE FROM visits WHERE {where}", args)  # the same columns, the same rule
        return gone

    # -- strangers' looks --------------------------------------------------------------------------

    def add_look(self, look: Look) -> None:
        """Say that a stored sighting's vectors link its stranger (the sighting must be in the log)."""
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO stranger_looks VALUES (?, ?, ?, ?, ?, ?, ?)",
                (look.sighting_id, look.person_id, look.camera, look.learned_at, look.face_until,
                 look.look_until, None if look.shape is None else json.dumps(look.shape)),
            )  # fmt: skip

    def looks(self, space: str, now: float) -> list[Look]:
        """Every look still linking at `now`, with its sighting's vectors usable in body space `space`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sighting_id, person_id, camera, learned_at, face_until, look_until, shape "
                f"FROM stranger_looks WHERE {_LOOK_LINKS_UNTIL} >= ?",
                (now,),
            ).fetchall()
            vectors = self._vectors([r[0] for r in rows], space)
        return [
            Look(sid, pid, camera, learned, face, look, json.loads(shape) if shape else None, vectors[sid])
            for sid, pid, camera, learned, face, look, shape in rows
        ]

    def delete_look(self, sighting_id: str, person_id: str) -> bool:
        """Delete the look a person learned from one sighting; False when there was none."""
        with self._lock, self._transaction():
            gone = self._db.execute(
                "DELETE FROM stranger_looks WHERE sighting_id = ? AND person_id = ?", (sighting_id, person_id)
            )
            return gone.rowcount > 0

    def delete_looks_of(self, person_ids: list[str]) -> int:
        with self._lock, self._transaction():
            return sum(
                self._db.execute(
                    f"DELETE FROM stranger_looks WHERE person_id IN ({','.join('?' * len(chunk))})", chunk
                ).rowcount
                for chunk in _chunks(person_ids, 500)
            )

    def delete_expired_looks(self, now: float) -> int:
        """Delete the looks neither part of which links any more (their sightings stay)."""
        with self._lock, self._transaction():
            return self._db.execute(
                f"DELETE FROM stranger_looks WHERE {_LOOK_LINKS_UNTIL} < ?",
                (now,),
            ).rowcount

    # -- reading -----------------------------------------------------------------------------------

    def get(self, sighting_id: str, space: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """A sighting's payload and its vectors usable in body space `space`, or None."""
        with self._lock:
            found = self._db.execute("SELECT payload FROM sightings WHERE id = ?", (sighting_id,)).fetchone()
            if found is None:
                return None
            return json.loads(found[0]), self._vectors([sighting_id], space)[sighting_id]

    def of_person(self, person_id: str | None = None) -> list[dict[str, Any]]:
        """Payloads of a person's sightings (everyone's when None), oldest first."""
        where, args = ("WHERE person_id = ?", (person_id,)) if person_id is not None else ("", ())
        with self._lock:
            rows = self._db.execute(f"SELECT payload FROM sightings {where} ORDER BY end_time, id", args)
            return [json.loads(r[0]) for r in rows]

    def of_person_with_vectors(
        self, person_id: str, space: str, every_space: bool = False
    ) -> list[tuple[dict[str, Any], dict[str, np.ndarray]]]:
        """A person's sightings, oldest first, with their vectors usable in body space `space`; with
        `every_space`, body vectors of other spaces too, named `body@SPACE` (an export)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, payload FROM sightings WHERE person_id = ? ORDER BY end_time, id", (person_id,)
            ).fetchall()
            vectors = self._vectors([r[0] for r in rows], space, every_space)
        return [(json.loads(payload), vectors[sighting_id]) for sighting_id, payload in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM sightings").fetchone()[0])

    # -- search and visits (camd/history) ---------------------------------------------------------
    # `where` below is SQL over the sightings table's columns (id, person_id, end_time, expires_at,
    # payload) written by camd/history/search.py with bound arguments only, never user text.

    def select(self, where: str, args: tuple[Any, ...], limit: int | None = None) -> list[dict[str, Any]]:
        """Payloads of the sightings matching `where`, newest first."""
        tail = "" if limit is None else f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(
                f"SELECT payload FROM sightings WHERE {where} ORDER BY end_time DESC, id{tail}", args
            )
            return [json.loads(r[0]) for r in rows]

    def vector_chunks(
        self, name: str, space: str, where: str, args: tuple[Any, ...], chunk: int = VECTOR_CHUNK
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """(sighting ids, one row each) of vector `name` of the sightings matching `where`, `chunk` rows
        at a time. One query under the lock reads the raw rows (int8 bodies: ~0.5 KB each); they are
        decoded a chunk at a time after, so a search over 100k sightings never holds them all as floats."""
        wanted = space if name in SPACE_DEPENDENT else ANY_SPACE
        params: tuple[Any, ...] = (wanted, name)
        if where.strip() == "1":  # no filter: the vectors alone, no join
            sql = "SELECT sighting_id, encoding, data FROM sighting_vectors WHERE space = ? AND name = ?"
        else:
            sql = (
                "SELECT v.sighting_id, v.encoding, v.data FROM sightings CROSS JOIN sighting_vectors v "
                f"ON v.sighting_id = sightings.id AND v.space = ? AND v.name = ? WHERE ({where})"
            )
            params += args
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return _decoded_chunks(rows, chunk)

    def vector_matrix(
        self, name: str, space: str, where: str, args: tuple[Any, ...]
    ) -> tuple[list[str], np.ndarray]:
        """`vector_chunks` as one matrix (a few rows, or short vectors)."""
        ids: list[str] = []
        parts: list[np.ndarray] = []
        for chunk_ids, matrix in self.vector_chunks(name, space, where, args):
            if parts and matrix.shape[1] != parts[0].shape[1]:
                continue  # one vector length per answer
            ids += chunk_ids
            parts.append(matrix)
        return ids, (np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32))

    def cameras(self) -> list[str]:
        """Every camera some sighting was made on."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT json_extract(payload, '$.camera') FROM sightings WHERE payload IS NOT NULL"
            )
            return sorted(str(r[0]) for r in rows if r[0] is not None)

    def put_visit(self, visit: dict[str, Any]) -> None:
        """Store (or replace) a visit: a dict with id, person_id, start_time, end_time, expires_at, ended."""
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO visits (id, person_id, start_time, end_time, expires_at, ended, "
                "payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (visit["id"], visit["person_id"], float(visit["start_time"]), float(visit["end_time"]),
                 _number(visit.get("expires_at")), int(bool(visit.get("ended"))),
                 json.dumps(visit, default=_plain)),
            )  # fmt: skip

    def visits(
        self, where: str = "1", args: tuple[Any, ...] = (), limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Visits matching `where` (over the visits table's columns), oldest first."""
        tail = "" if limit is None else f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(
                f"SELECT payload FROM visits WHERE {where} ORDER BY start_time, id{tail}", args
            )
            return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):  # a full disk: the WAL stays, SQLite replays it
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    # -- helpers -----------------------------------------------------------------------------------

    def _vectors(
        self, ids: Iterable[str], space: str, every_space: bool = False
    ) -> dict[str, dict[str, np.ndarray]]:
        out: dict[str, dict[str, np.ndarray]] = {sighting_id: {} for sighting_id in ids}
        for chunk in _chunks(list(out), 500):  # SQLite's limit on bound parameters
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT sighting_id, space, name, encoding, data FROM sighting_vectors "
                f"WHERE sighting_id IN ({marks})",
                chunk,
            )
            for sighting_id, row_space, name, encoding, data in rows:
                if row_space in (ANY_SPACE, space):
                    out[sighting_id][name] = _decode(encoding, data)
                elif every_space:
                    out[sighting_id][f"{name}@{row_space}"] = _decode(encoding, data)
        return out

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception (autocommit connection)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _columns(payload: dict[str, Any]) -> tuple[Any, ...]:
    """The indexed columns and the JSON of a payload: person_id, end_time, expires_at, payload."""
    return (payload.get("person_id"), _number(payload.get("end_time")), _number(payload.get("expires_at")),
            json.dumps(payload, default=_plain))  # fmt: skip


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays in a payload."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a sighting")


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
