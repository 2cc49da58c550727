"""Everything camd stores about one person, as one zip a person can be handed (their biometric data).

`camd people export NAME --out FILE` (or GET /api/people/{name}/export through the running daemon)
writes:

- ``manifest.json``: format and version, when, by which camd, and how many of each part;
- ``person.json``: the person's record (name, role, kind, created, last seen, seen count, ...);
- ``prototypes.json``: every vector they are recognised by, with its modality, how it was learned
  (source: photo:FILE, clip:FILE#TRACK, sighting:ID, correction:ID, same_day, stranger), when
  (``learned_at``, epoch seconds and ISO 8601), where (camera, sighting) and until when;
- ``negative_feedback.json``: the "that was not NAME" corrections: negative prototypes, same fields;
- ``sightings.json``: every sighting matched to them, with its decision, evidence, vectors and the
  path of its crop inside the zip (``crop_file``; null when no crop was kept or it is gone);
- ``visits.json``: their visits (camd/history/visits.py: arrival, departure, cameras, sightings);
- ``crops/``: those crops (small JPEGs);
- ``enrollment/``: the crops their body prototypes were embedded from (``crop_files`` in a prototype's
  row), kept so that another body model can embed them again.

Vectors are plain JSON lists of floats (float32 values): readable without camd. Each row names its
``collection``: prototypes and sightings of every body space (MobileNetV2, OSNet) are included.
"""

from __future__ import annotations

import json
import os
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from camd import __version__
from camd.identity.crops import safe_name
from camd.identity.memory import PROTOTYPES, SIGHTINGS, Hit
from camd.identity.service import IdentityService
from camd.private import open_private

FORMAT = "camd-person-export"
VERSION = 1


def _iso(epoch: Any) -> str | None:
    if not isinstance(epoch, int | float):
        return None
    return datetime.fromtimestamp(float(epoch), tz=UTC).isoformat(timespec="seconds")


def _vectors(hit: Hit) -> dict[str, list[float]]:
    return {name: [float(x) for x in vector.ravel()] for name, vector in sorted(hit.vectors.items())}


def _prototype(hit: Hit, collection: str) -> dict[str, Any]:
    payload = dict(hit.payload)
    return {
        **payload,
        "collection": collection,  # the body space it belongs to (docs/identity.md, OSNet)
        "learned_at_iso": _iso(payload.get("learned_at")),
        "expires_at_iso": _iso(payload.get("expires_at")),
        "vectors": _vectors(hit),
    }


def write_export(
    service: IdentityService, name: str, target: str | os.PathLike[str] | IO[bytes]
) -> dict[str, Any]:
    """Write NAME's bundle to `target` (a path or a binary file); returns the manifest.
    UnknownPersonError when nobody has that name."""
    memory = service.memory
    person = memory.require_person(name)
    stored = memory.everything_of(name)
    prototypes = sorted(stored[PROTOTYPES], key=lambda r: (r[1].payload.get("learned_at") or 0.0, r[1].key))
    positive = [_prototype(h, c) for c, h in prototypes if not h.payload.get("negative")]
    negative = [_prototype(h, c) for c, h in prototypes if h.payload.get("negative")]
    enrollment: list[tuple[str, Path]] = []
    for row in positive + negative:
        row["crop_files"] = []
        for crop in row.get("crops") or []:
            path = memory.enrollment_crops.path(crop)
            if path.is_file():
                enrollment.append((f"enrollment/{crop}", path))
                row["crop_files"].append(f"enrollment/{crop}")
    sightings = []
    crops: list[tuple[str, Path]] = []
    for collection, hit in sorted(stored[SIGHTINGS], key=lambda r: r[1].payload.get("end_time") or 0.0):
        row = {**hit.payload, "end_time_iso": _iso(hit.payload.get("end_time")), "collection": collection,
               "vectors": _vectors(hit)}
        crop = hit.payload.get("crop")
        row["crop_file"] = None
        if crop and Path(crop).is_file():
            inside = f"crops/{safe_name(str(hit.payload.get('sighting_id') or hit.key))}.jpg"
            crops.append((inside, Path(crop)))
            row["crop_file"] = inside
        row["crop_files"] = []  # the track's other kept crops (what `camd adapt` learns from)
        for kept in hit.payload.get("crops") or []:
            if kept != crop and Path(kept).is_file():
                inside = f"crops/{safe_name(Path(kept).stem)}.jpg"
                crops.append((inside, Path(kept)))
                row["crop_files"].append(inside)
        sightings.append(row)
    visits = [{k: v for k, v in row.items() if not k.startswith("_")}
              for row in memory.log.visits("person_id = ?", (name,))]  # fmt: skip
    manifest = {
        "format": FORMAT, "version": VERSION, "camd_version": __version__,
        "exported_at": datetime.now(tz=UTC).isoformat(timespec="seconds"), "person": name,
        "counts": {"prototypes": len(positive), "negative_feedback": len(negative),
                   "sightings": len(sightings), "crops": len(crops), "enrollment_crops": len(enrollment),
                   "visits": len(visits)},
    }  # fmt: skip
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for member, content in (
            ("manifest.json", manifest), ("person.json", person), ("prototypes.json", positive),
            ("negative_feedback.json", negative), ("sightings.json", sightings), ("visits.json", visits),
        ):  # fmt: skip
            bundle.writestr(member, json.dumps(content, indent=1, default=str))
        for inside, path in crops + sorted(set(enrollment)):
            bundle.write(path, inside, compress_type=zipfile.ZIP_STORED)  # JPEGs do not compress
    return manifest


def _private(out: Path) -> IO[bytes]:
    """`out` opened for writing, owner-only (the bundle holds biometric data)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return open_private(out)


def export_file(service: IdentityService, name: str, out: Path) -> dict[str, Any]:
    """The bundle written to `out`; returns its manifest and the file."""
    service.memory.require_person(name)  # before the file is created
    with _private(Path(out)) as file:
        manifest = write_export(service, name, file)
    return {**manifest, "file": str(out)}


def save_bundle(data: bytes, out: Path) -> dict[str, Any]:
    """A bundle received from the daemon's API, written owner-only; returns its manifest."""
    out = Path(out)
    with _private(out) as file:
        file.write(data)
    with zipfile.ZipFile(out) as bundle:
        manifest: dict[str, Any] = json.loads(bundle.read("manifest.json"))
    return {**manifest, "file": str(out)}
