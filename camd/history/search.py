"""Search the sighting log: filter by who, what class, where, when and what they wore, and rank.

Filters are SQL over the log's indexed columns (person, end time) and its JSON payloads (camera,
class, label); clothing colours and "more like this" read one vector per candidate in a single
query (the log's `vector_matrix`) and rank with numpy. Brute force on purpose: a household's log
is at most a few hundred thousand sightings (retention), which one matrix product ranks in tens of
milliseconds, and keeping a second copy of every sighting's vectors in Qdrant would bring back what
the log exists to avoid (an embedded Qdrant holds every point it ever held in RAM;
camd/identity/sightings.py). docs/history.md has the figures.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from camd.history import colours
from camd.identity.memory import Memory, UnknownPersonError
from camd.types import PERSON

# Words for identity classes (`--class`): each names one or more of the matcher's classes.
CLASS_WORDS: dict[str, tuple[str, ...]] = {
    "family": ("family",), "visitor": ("visitor",), "visitors": ("visitor",),
    "stranger": ("stranger",), "strangers": ("stranger",),
    "known": ("known_vehicle",), "known_vehicle": ("known_vehicle",), "known vehicle": ("known_vehicle",),
    "unknown": ("unknown_vehicle",), "unknown_vehicle": ("unknown_vehicle",),
    "unknown vehicle": ("unknown_vehicle",),
    "vehicle": ("known_vehicle", "unknown_vehicle"), "vehicles": ("known_vehicle", "unknown_vehicle"),
    "people": ("family", "visitor", "stranger"), "person": ("family", "visitor", "stranger"),
}  # fmt: skip
MAX_LIMIT = 1000
# Fields of a sighting a result shows (the rest, vectors aside, is in `camd people show`).
RESULT_FIELDS = ("sighting_id", "camera", "label", "start_time", "end_time", "identity", "identity_class",
                 "confidence", "person_id", "evidence", "crop")  # fmt: skip


class UnknownCameraError(LookupError, ValueError):
    """No such camera (a LookupError: 404 through the API; a ValueError: the CLI's usual error line)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown camera"


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What to look for; every field narrows (None / empty: anything)."""

    person: str | None = None  # a name, or a stranger's unknown-N / vehicle-N
    classes: tuple[str, ...] = ()  # identity classes (CLASS_WORDS values)
    camera: str | None = None
    after: float | None = None  # epoch seconds: seen at or after
    before: float | None = None  # seen at or before
    upper: str | None = None  # a colour name (colours.NAMES) of the upper body
    lower: str | None = None
    like: str | None = None  # a sighting id: rank by closeness of its body (vehicle) vector
    limit: int = 50

    @classmethod
    def build(
        cls,
        person: str | None = None,
        classes: Iterable[str] = (),
        camera: str | None = None,
        after: float | None = None,
        before: float | None = None,
        wearing: Iterable[str] = (),
        upper: str | None = None,
        lower: str | None = None,
        like: str | None = None,
        limit: int = 50,
    ) -> SearchQuery:
        """From user words: ValueError naming what is not understood."""
        wanted: list[str] = []
        for word in classes:
            key = word.strip().lower().replace("-", " ")
            if key not in CLASS_WORDS and key.replace(" ", "_") not in CLASS_WORDS:
                raise ValueError(
                    f"unknown class {word!r}: one of family, visitor, stranger, known (vehicle), "
                    "unknown (vehicle), vehicle, people"
                )
            wanted += CLASS_WORDS.get(key) or CLASS_WORDS[key.replace(" ", "_")]
        parts = {"upper": colours.check_colour(upper) if upper else None,
                 "lower": colours.check_colour(lower) if lower else None}  # fmt: skip
        for phrase in wearing:
            part, colour = colours.parse_wearing(phrase)
            if parts[part] not in (None, colour):
                raise ValueError(f"two colours for the {part} body ({parts[part]}, {colour}): give one")
            parts[part] = colour
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        return cls(person or None, tuple(dict.fromkeys(wanted)), camera or None, after, before,
                   parts["upper"], parts["lower"], like or None, limit)  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Where:
    clauses: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, clause: str, *args: Any) -> None:
        self.clauses.append(clause)
        self.args.extend(args)

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses) or "1"


def search(memory: Memory, query: SearchQuery, cameras: Iterable[str] = ()) -> dict[str, Any]:
    """{"results": [...], "query": ..., "candidates": n, "took_ms": ...}: the sightings matching
    `query`, newest first, or by score when it ranks (colours: the share of the asked colours; like:
    cosine similarity). `cameras`: the configured ones (a camera only in the log counts too).
    UnknownPersonError / UnknownCameraError for a name, sighting or camera camd never saw."""
    started = time.perf_counter()
    log = memory.log
    where = _Where()
    if query.person is not None:
        where.add("person_id = ?", query.person)
    if query.camera is not None:
        where.add("json_extract(payload, '$.camera') = ?", query.camera)
    if query.classes:
        where.add(f"json_extract(payload, '$.identity_class') IN ({','.join('?' * len(query.classes))})",
                  *query.classes)  # fmt: skip
    if query.after is not None:
        where.add("end_time >= ?", query.after)
    if query.before is not None:
        where.add("json_extract(payload, '$.start_time') <= ?", query.before)
    target_vector, vector_name = None, None
    if query.like is not None:
        target = memory.sighting(query.like)  # UnknownPersonError with a readable message
        vector_name = "body" if target.payload.get("label", PERSON) == PERSON else "vehicle"
        target_vector = target.vectors.get(vector_name)
        if target_vector is None:
            raise ValueError(f"sighting {query.like} kept no {vector_name} vector: nothing to compare with")
    # Only people keep body and colour vectors, only vehicles vehicle vectors: the vector ranked by
    # says the kind, so no filter on the label is needed (nor, unfiltered, a join).
    sql, args = where.sql, tuple(where.args)
    scores: dict[str, float] | None = None
    candidates: int | None = None
    if query.upper or query.lower:
        candidates, scores = _colour_scores(
            log.vector_chunks("colour", memory.body_space, sql, args), query.upper, query.lower
        )
    if target_vector is not None and vector_name is not None:
        chunks = log.vector_chunks(vector_name, memory.body_space, sql, args)
        candidates, scores = _similarities(chunks, target_vector, query.like, scores, query.limit)
    if scores is None:
        rows = log.select(sql, args, limit=query.limit)
    else:
        best = sorted(scores, key=lambda sid: -scores[sid])[: query.limit]
        found = {row["sighting_id"]: row for row in _by_ids(memory, best)}
        rows = [found[sid] for sid in best if sid in found]
    if not rows:  # nothing: say so if the name or camera is one camd never saw (a scan, only now)
        if query.person is not None:
            check_person(memory, query.person)
        if query.camera is not None:
            check_camera(memory, query.camera, cameras)
    results = [_result(row, None if scores is None else scores.get(row["sighting_id"])) for row in rows]
    _add_wore(memory, results)
    return {
        "query": query.as_dict(),
        "candidates": candidates,
        "results": results,
        "took_ms": round((time.perf_counter() - started) * 1000.0, 1),
    }


def check_camera(memory: Memory, camera: str, cameras: Iterable[str] = ()) -> None:
    """UnknownCameraError unless `camera` is configured or some sighting was made on it."""
    known = set(cameras) | set(memory.log.cameras())
    if camera not in known:
        raise UnknownCameraError(
            f"no camera {camera!r}: camd knows {', '.join(sorted(known)) or 'no camera yet'}"
        )


def check_person(memory: Memory, person: str) -> None:
    if memory.person(person) is not None or memory.log.select("person_id = ?", (person,), limit=1):
        return
    raise UnknownPersonError(
        f"nobody called {person!r} in the memory: `camd people list --strangers` lists names and "
        "unknown-N ids"
    )


def _colour_scores(
    chunks: Iterable[tuple[list[str], np.ndarray]], upper: str | None, lower: str | None
) -> tuple[int, dict[str, float]]:
    """(candidates, {sighting: score}) of those wearing the asked colours; the score is the smallest
    share among the asked colours."""
    candidates, out = 0, {}
    for ids, matrix in chunks:
        candidates += len(ids)
        upper_shares, lower_shares = colours.shares(matrix)
        score = np.ones(len(ids), dtype=np.float32)
        for colour, band in ((upper, upper_shares), (lower, lower_shares)):
            if colour is not None:
                score = np.minimum(score, band[:, colours.NAMES.index(colour)])
        for i in np.flatnonzero(score >= colours.MIN_SHARE):
            out[ids[i]] = round(float(score[i]), 4)
    return candidates, out


def _similarities(
    chunks: Iterable[tuple[list[str], np.ndarray]],
    target: np.ndarray,
    exclude: str | None,
    allowed: dict[str, float] | None,
    limit: int,
) -> tuple[int, dict[str, float]]:
    """(candidates, {sighting: cosine}) of the `limit` rows closest to `target`, a chunk at a time;
    `allowed`: only these sightings (those a colour filter kept)."""
    target = np.asarray(target, dtype=np.float32).ravel()
    unit = target / max(float(np.linalg.norm(target)), 1e-12)
    candidates, best_ids, best_scores = 0, [], []
    for ids, matrix in chunks:
        if matrix.shape[1] != unit.size:
            continue  # another body space's length (never mixed in one space)
        keep = [i for i, sid in enumerate(ids) if sid != exclude and (allowed is None or sid in allowed)]
        if len(keep) != len(ids):
            ids, matrix = [ids[i] for i in keep], matrix[keep]
        if not ids:
            continue
        candidates += len(ids)
        lengths = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))  # no squared copy of the chunk
        cosine = (matrix @ unit) / np.maximum(lengths, 1e-12)
        top = np.argpartition(-cosine, limit - 1)[:limit] if len(ids) > limit else np.arange(len(ids))
        best_ids += [ids[i] for i in top]
        best_scores.append(cosine[top])
    if not best_ids:
        return candidates, {}
    scores = np.concatenate(best_scores)
    return candidates, {sid: round(float(c), 4) for sid, c in zip(best_ids, scores, strict=True)}


def _by_ids(memory: Memory, ids: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        out += memory.log.select(f"id IN ({','.join('?' * len(chunk))})", tuple(chunk))
    return out


def _result(payload: dict[str, Any], score: float | None) -> dict[str, Any]:
    row = {key: payload.get(key) for key in RESULT_FIELDS}
    row["sighting_id"] = row["sighting_id"] or payload.get("event_id")
    row["who"] = payload.get("identity") or payload.get("person_id")
    end = payload.get("end_time")
    row["time"] = local_time(end) if isinstance(end, int | float) else None
    if score is not None:
        row["score"] = score
    return row


def _add_wore(memory: Memory, results: list[dict[str, Any]]) -> None:
    """Each person result's main upper and lower colours, named."""
    people = [r["sighting_id"] for r in results if r.get("label") == PERSON]
    if not people:
        return
    ids, matrix = memory.log.vector_matrix(
        "colour", memory.body_space, f"id IN ({','.join('?' * len(people))})", tuple(people)
    )
    named = {sid: colours.describe(matrix[i]) for i, sid in enumerate(ids)}
    for row in results:
        row["wore"] = named.get(row["sighting_id"])


def local_time(epoch: float) -> str:
    """Local time, to the second, as people read it."""
    return datetime.fromtimestamp(float(epoch)).isoformat(sep=" ", timespec="seconds")
