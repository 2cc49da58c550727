"""Enrollment and the people operations behind `camd enroll|people|correct|forget`.

Every function takes the IdentityService and plain arguments and returns a JSON-able dict, so the
control API can call the same functions the CLI does. Errors are `EnrollmentError` (bad input: the message
says what to do), `UnknownPersonError` (no such name or sighting) or `TrackChoiceNeeded` (a clip shows
several people: the message lists them, each with a crop to look at).
"""

from __future__ import annotations

import contextlib
import stat
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camd.identity.camera import keep, look
from camd.identity.evidence._crops import crop_box
from camd.identity.matcher import TrackVectors, shape_list
from camd.identity.memory import UnknownPersonError
from camd.identity.person import PersonRecord, require_person_name
from camd.identity.service import IdentityService
from camd.identity.track import TrackEvidence
from camd.private import private_dir, write_private
from camd.types import Detection, kind_of, labels_of

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
# A photo claiming more pixels than this is refused from its header, before anything is decoded (a
# "decompression bomb" of a few KB can claim 100000 x 100000). 50 MP covers phone cameras.
MAX_PHOTO_PIXELS = 50_000_000
WORK_SIDE = 2560  # photos are scaled to at most this many pixels a side: faces stay large, memory small
MIN_PHOTO_SIDE = 32
MIN_TRACK_FRAMES = 3
ENROLL_CROPS = 12  # crops a clip enrollment keeps of its track (a sighting keeps identity.best_crops)
Progress = Callable[[int, int], None]  # (done, total)


class EnrollmentError(ValueError):
    """Input that cannot be enrolled; the message says why and what to do."""


class TrackChoiceNeeded(EnrollmentError):
    """The clip shows several people (or vehicles): choose one with --track."""

    def __init__(self, message: str, tracks: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.tracks = tracks


def _person_record(service: IdentityService, name: str, role: str, kind: str) -> dict[str, Any]:
    """The record an enrollment will commit (checked now, written last by `_enrollment`)."""
    name = require_person_name(name)
    if role not in ("family", "visitor"):
        raise EnrollmentError(f"role must be family or visitor, not {role!r}")
    person = service.memory.person(name)
    now = time.time()
    if person is None:
        person = PersonRecord(person_id=name, name=name, role=role, kind=kind, created=now).payload()
    elif person.get("role") == "stranger":
        raise EnrollmentError(
            f"{name!r} is a stranger id; enroll under a real name (camd correct can relabel)"
        )
    elif person.get("kind") != kind:
        raise EnrollmentError(f"{name!r} is enrolled as a {person.get('kind')}, not a {kind}")
    person["role"] = role
    return person


@contextlib.contextmanager
def _enrollment(service: IdentityService, person: dict[str, Any]) -> Iterator[str]:
    """All or nothing: prototypes written inside the block carry the yielded batch id, and count only
    once the person's record, written last, lists it (memory.py explains; a crash leaves nothing
    half-enrolled, an error removes what was written)."""
    batch = uuid.uuid4().hex
    try:
        yield batch
    except BaseException:
        with contextlib.suppress(Exception):  # best effort: the next open sweeps what is left anyway
            service.memory.discard_batch(batch)
            service.sweep_enrollment_crops()
        raise
    service.memory.commit_enrollment(person, batch)


def _detector(service: IdentityService) -> Any:
    from camd.vision.detector import create_detector

    return create_detector(service.config.detector, service.config.models_path)


def read_photo(path: Path) -> np.ndarray:
    """A photo file as a BGR uint8 image, whatever its kind: grey, 16-bit, with alpha (laid on grey),
    CMYK, palette, animated (the first frame), turned upright by its EXIF orientation, scaled to at
    most WORK_SIDE a side. Anything else is an EnrollmentError naming the file and the reason."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise EnrollmentError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise EnrollmentError(f"{path}: a folder, not a photo")
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
        raise EnrollmentError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise EnrollmentError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow's own warnings (a large image, odd EXIF) would reach the user's terminal raw: the
            # checks here decide, and say so.
            warnings.simplefilter("ignore")
            rgb = _decode(path)
    except EnrollmentError:
        raise
    except PermissionError:
        raise EnrollmentError(f"{path}: no permission to read it") from None
    except UnidentifiedImageError:
        raise EnrollmentError(
            f"{path}: not an image camd can read (JPEG, PNG, BMP, WebP, GIF or TIFF)"
        ) from None
    except Image.DecompressionBombError as exc:  # Pillow refuses a huge header even before our check
        raise EnrollmentError(
            f"{path}: too large to read safely ({exc}); at most {MAX_PHOTO_PIXELS // 10**6} megapixels"
        ) from None
    except Exception as exc:  # a damaged file can raise almost anything from a decoder
        raise EnrollmentError(f"{path}: damaged or truncated image ({type(exc).__name__}: {exc})") from None
    rgb.thumbnail((WORK_SIDE, WORK_SIDE))
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])


def _decode(path: Path) -> Any:
    """Header checks first (nothing is decoded for a refused size), then the pixels as 8-bit RGB."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        width, height = image.size
        if width * height > MAX_PHOTO_PIXELS:
            raise EnrollmentError(
                f"{path}: {width}x{height} pixels is too large (at most {MAX_PHOTO_PIXELS // 10**6} "
                "megapixels); scale it down"
            )
        if min(width, height) < MIN_PHOTO_SIDE:
            raise EnrollmentError(f"{path}: {width}x{height} pixels is too small to show a person")
        image.draft("RGB", (WORK_SIDE, WORK_SIDE))  # JPEG: decode at a reduced scale, cheaply
        image.load()
        return _rgb(ImageOps.exif_transpose(image))


def _rgb(image: Any) -> Any:
    """Any Pillow mode to 8-bit RGB."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # 16/32-bit grey: keep the contrast
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        grey = np.clip(values * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")  # uint8, 2-D: mode L
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        background = Image.new("RGBA", image.size, (128, 128, 128, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def photo_files(photos: Path) -> list[Path]:
    """The photos of a folder (by suffix; folders and unreadable files among them are reported by
    read_photo), or the one photo given."""
    photos = Path(photos)
    if photos.is_dir():
        try:
            files = sorted(p for p in photos.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        except PermissionError:
            raise EnrollmentError(f"{photos}: no permission to list this folder") from None
        if not files:
            raise EnrollmentError(f"{photos}: no photos ({', '.join(PHOTO_SUFFIXES)}) in this folder")
        return files
    if photos.exists():
        return [photos]
    raise EnrollmentError(f"{photos}: no such file or folder")


# -- photos -----------------------------------------------------------------------------------------


def enroll_photos(
    service: IdentityService,
    name: str,
    role: str,
    photos: Path,
    kind: str = "person",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Enroll from a folder of photos (or one photo): per photo the largest person's body appearance
    and the largest face; a photo with a face but no detectable body still gives the face."""
    require_person_name(name)
    photos = Path(photos)
    files = photo_files(photos)
    detector = _detector(service)
    used, skipped, added = [], [], {"face": 0, "body": 0, "vehicle": 0}
    vectors_by_photo = []
    for index, path in enumerate(files):
        try:
            found = _photo_vectors(service, detector, read_photo(path), kind)
        except EnrollmentError as exc:  # the row names the photo: the reason need not repeat it
            skipped.append({"photo": str(path), "reason": str(exc).removeprefix(f"{path}: ")})
            found = None
        if found is not None and not found:
            skipped.append(
                {"photo": str(path), "reason": f"no {kind}{' or face' if kind == 'person' else ''} found"}
            )
        elif found:
            used.append(str(path))
            vectors_by_photo.append((path, found))
        if progress is not None:
            progress(index + 1, len(files))
    if not used:
        reasons = "; ".join(f"{Path(s['photo']).name}: {s['reason']}" for s in skipped)
        raise EnrollmentError(f"nothing to enroll from {photos}: {reasons}")
    with _enrollment(service, _person_record(service, name, role, kind)) as batch:
        for path, found in vectors_by_photo:
            crop = found.pop("crop", None)
            for modality, vectors in found.items():
                kept = service.enrollment_crops.save([crop["image"]]) if modality == "body" and crop else None
                service.memory.add_prototype(name, vectors, source=f"photo:{path.name}", batch=batch,
                                             crops=kept)  # fmt: skip
                added["face" if modality == "face" else ("vehicle" if kind == "vehicle" else "body")] += 1
    return {"name": name, "role": role, "kind": kind, "photos_used": used, "skipped": skipped, "added": added}


def _photo_vectors(
    service: IdentityService, detector: Any, image: np.ndarray, kind: str
) -> dict[str, dict[str, np.ndarray]]:
    """{"body": {...}} and/or {"face": {...}} (people) or {"vehicle": {...}} for one photo."""
    out: dict[str, dict[str, np.ndarray]] = {}
    detections = [d for d in detector.detect(image) if d.label in labels_of(kind) and d.score >= 0.5]
    if detections:
        best = max(detections, key=lambda d: d.area)
        crop = crop_box(image, best.box)
        appearance, colour = service.embed_crop(kind, crop)
        if kind == "vehicle" and appearance is not None:
            out["vehicle"] = {"vehicle": appearance}
        elif appearance is not None and colour is not None:
            out["body"] = {"body": appearance, "colour": colour}
            out["crop"] = {"image": np.ascontiguousarray(crop)}  # kept for another body model
    face = service.extractors.face
    if kind == "person" and face is not None:
        with service.extractors.lock:
            faces = face.faces(image)
            if not faces:  # small faces in a big photo: look again at twice the size
                faces = face.faces(image, upscale=2.0) if max(image.shape[:2]) < 1400 else []
        if faces:
            out["face"] = {"face": faces[0].embedding}
    return out


# -- clips ------------------------------------------------------------------------------------------


def clip_tracks(
    service: IdentityService,
    clip: Path,
    kind: str = "person",
    start_s: float = 0.0,
    end_s: float | None = None,
    fps: float = 5.0,
    progress: Progress | None = None,
) -> dict[int, TrackEvidence]:
    """Every person (or vehicle) track of a clip's time span, tracked as the daemon would track it
    (camd/vision/offline.py: its decoder, detector, object filters and tracker), with its evidence."""
    from camd.vision.offline import ClipError, daemon_view

    clip = Path(clip)
    tracks: dict[int, TrackEvidence] = {}
    # An enrollment keeps more crops than a sighting: its prototypes should cover every view it shows.
    best_k, frames = max(ENROLL_CROPS, service.config.identity.best_crops), 0
    stats: dict[str, int] = {}
    try:
        for seen in daemon_view(clip, service.config, fps, labels_of(kind), start_s, end_s, None, progress):
            frames += 1
            boxes = [o.detection.box for o in seen.tracked]
            candidates = []
            for obj in seen.tracked:
                evidence = tracks.get(obj.track_id)
                if evidence is None:
                    evidence = TrackEvidence.for_label(obj.detection.label, best_k, "enroll")
                    tracks[obj.track_id] = evidence
                candidates.append(look(service, evidence, seen.frame, obj, boxes, stats))
            keep(service, seen.frame, [c for c in candidates if c is not None], stats)  # one batch a frame
    except ClipError as exc:
        raise EnrollmentError(str(exc)) from None
    if frames == 0:
        raise EnrollmentError(f"{clip}: no frame could be decoded")
    return {tid: ev for tid, ev in tracks.items() if ev.frames >= MIN_TRACK_FRAMES and ev.crops}


def enroll_clip(
    service: IdentityService,
    name: str,
    role: str,
    clip: Path,
    track: int | None = None,
    kind: str = "person",
    start_s: float = 0.0,
    end_s: float | None = None,
    listing_dir: Path | None = None,
    progress: Progress | None = None,
    clip_name: str | None = None,
) -> dict[str, Any]:
    """Enroll the person (vehicle) of one track of a clip; several tracks and no `track`: TrackChoiceNeeded
    with a crop per track saved in `listing_dir` (default <state_dir>/enroll-tracks/<clip name>).
    `clip_name`: the name the user knows the clip by (an upload is processed under a temporary name)."""
    require_person_name(name)
    shown = clip_name or Path(clip).name
    tracks = clip_tracks(service, clip, kind, start_s, end_s, progress=progress)
    if not tracks:
        raise EnrollmentError(f"{clip}: no {kind} was tracked for at least {MIN_TRACK_FRAMES} frames")
    if track is None and len(tracks) > 1:
        folder = listing_dir or service.config.state_dir / "enroll-tracks" / Path(shown).stem
        listing = _save_track_crops(tracks, Path(folder))
        raise TrackChoiceNeeded(
            f"{clip} shows {len(tracks)} {kind} tracks; choose one with --track N "
            f"(a crop of each is in {folder})",
            listing,
        )
    if track is None:
        track = next(iter(tracks))
    if track not in tracks:
        raise EnrollmentError(f"track {track} is not among the clip's {kind} tracks: {sorted(tracks)}")
    evidence = tracks[track]
    vectors = evidence.vectors()
    with _enrollment(service, _person_record(service, name, role, kind)) as batch:
        added = _add_track_prototypes(
            service, name, vectors, source=f"clip:{shown}#{track}", batch=batch,
            views=evidence.view_prototypes() if kind == "person" else None,
        )  # fmt: skip
    return {
        "name": name,
        "role": role,
        "kind": kind,
        "track": track,
        "frames": tracks[track].frames,
        "added": added,
    }


def _save_track_crops(tracks: dict[int, TrackEvidence], folder: Path) -> list[dict[str, Any]]:
    private_dir(folder)
    listing = []
    for tid, evidence in sorted(tracks.items()):
        best = evidence.best_crop()
        path = folder / f"track-{tid}.jpg"
        if best is not None:
            ok, jpeg = cv2.imencode(".jpg", best.image)
            if ok:
                write_private(path, jpeg.tobytes())
        listing.append({
            "track": tid, "frames": evidence.frames, "faces": len(evidence.faces),
            "crop": str(path) if best is not None else None,
            "first_seen_s": round(min(c.timestamp for c in evidence.crops), 1) if evidence.crops else None,
        })  # fmt: skip
    return listing


def _add_track_prototypes(
    service: IdentityService, name: str, vectors: TrackVectors, source: str, batch: str,
    negative: bool = False, views: list[Any] | None = None, crop_images: list[np.ndarray] | None = None,
) -> dict[str, int]:
    """A track's prototypes: up to 3 faces, its body (one per view it showed, with `views` from
    TrackEvidence.view_prototypes; else the track's mean), its vehicle look, its body shape (with its
    view). The body crops are kept (enrollment_crops.py) so that another body model can embed them."""
    added = {"face": 0, "body": 0, "vehicle": 0, "shape": 0}
    memory = service.memory
    for face in vectors.faces[:3]:
        memory.add_prototype(name, {"face": face}, source=source, negative=negative, batch=batch)
        added["face"] += 1
    if views:
        for body, colour, view, crops in views:
            parts = {"body": body, **({"colour": colour} if colour is not None else {})}
            kept = service.enrollment_crops.save([c.image for c in crops])
            memory.add_prototype(name, parts, source=source, negative=negative, batch=batch, view=view,
                                 camera=vectors.camera, crops=kept)  # fmt: skip
            added["body"] += 1
    elif vectors.body is not None:
        parts = {"body": vectors.body, **({"colour": vectors.colour} if vectors.colour is not None else {})}
        kept = service.enrollment_crops.save(crop_images) if crop_images else None
        memory.add_prototype(name, parts, source=source, negative=negative, batch=batch,
                             camera=vectors.camera, crops=kept)  # fmt: skip
        added["body"] += 1
    if vectors.vehicle is not None:
        memory.add_prototype(
            name, {"vehicle": vectors.vehicle}, source=source, negative=negative, batch=batch
        )
        added["vehicle"] += 1
    if vectors.shape is not None and not negative:
        memory.add_prototype(name, {}, source=source, shape=shape_list(vectors.shape), batch=batch,
                             view=vectors.shape_view)  # fmt: skip
        added["shape"] += 1
    return added


# -- sightings and corrections ----------------------------------------------------------------------


def _sighting_vectors(service: IdentityService, sighting_id: str) -> tuple[dict[str, Any], TrackVectors]:
    hit = service.memory.sighting(sighting_id)
    vectors = TrackVectors(kind=kind_of(str(hit.payload.get("label"))), camera=hit.payload.get("camera"))
    if "face" in hit.vectors:
        vectors.faces = hit.vectors["face"][None]
    vectors.body = hit.vectors.get("body")
    vectors.colour = hit.vectors.get("colour")
    vectors.vehicle = hit.vectors.get("vehicle")
    if not (vectors.faces.size or vectors.body is not None or vectors.vehicle is not None):
        raise EnrollmentError(
            f"sighting {sighting_id!r} holds no vectors (identity was off when it was made)"
        )
    return hit.payload, vectors


def _sighting_crop(payload: dict[str, Any]) -> list[np.ndarray] | None:
    """The sighting's stored crop, to keep beside the prototypes made from it."""
    path = payload.get("crop")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path else None
    return [image] if image is not None else None


def enroll_sighting(
    service: IdentityService, name: str, role: str, sighting_id: str, kind: str | None = None
) -> dict[str, Any]:
    """Enroll NAME from a sighting camd recorded (its track's vectors); `kind`, when given, must be the
    sighting's (enrolling a person's sighting as a vehicle is a mistake worth saying)."""
    payload, vectors = _sighting_vectors(service, sighting_id)
    if kind is not None and kind != vectors.kind:
        raise EnrollmentError(
            f"sighting {sighting_id!r} is a {vectors.kind} ({payload.get('label')}), not a {kind}"
            + (": drop --vehicle" if kind == "vehicle" else ": add --vehicle")
        )
    with _enrollment(service, _person_record(service, name, role, vectors.kind)) as batch:
        added = _add_track_prototypes(service, name, vectors, source=f"sighting:{sighting_id}", batch=batch,
                                      crop_images=_sighting_crop(payload))  # fmt: skip
    _relabel_sighting(service, sighting_id, name, role, vectors.kind)
    _release_stranger(service, payload.get("person_id"), sighting_id)
    return {"name": name, "role": role, "kind": vectors.kind, "sighting": sighting_id, "added": added}


def _release_stranger(service: IdentityService, stranger_id: str | None, sighting_id: str) -> None:
    """A stranger's sighting now belongs to someone known: the stranger no longer learns from it."""
    if not stranger_id:
        return
    stranger = service.memory.person(stranger_id)
    if stranger is None or stranger.get("role") != "stranger":
        return
    service.memory.remove_prototypes(stranger_id, sighting_id)
    if not service.memory.prototypes(stranger_id) and not service.memory.sightings(stranger_id):
        service.memory.forget(stranger_id)


def _relabel_sighting(service: IdentityService, sighting_id: str, name: str, role: str, kind: str) -> None:
    service.memory.update_sighting(sighting_id, {
        "person_id": name, "identity": name, "global_id": name, "expires_at": None,
        "identity_class": "known_vehicle" if kind == "vehicle" else role,
        "corrected": True,  # the user said who it was: `camd adapt` takes it as confirmed
    })  # fmt: skip


def correct(
    service: IdentityService, sighting_id: str, is_name: str | None = None, not_name: str | None = None
) -> dict[str, Any]:
    """`--is NAME`: the sighting was NAME (its vectors become NAME's prototypes). `--not NAME`: it was not
    (its vectors become NAME's negative prototypes, which veto NAME on tracks that look like it)."""
    if (is_name is None) == (not_name is None):
        raise EnrollmentError("give exactly one of --is NAME or --not NAME")
    payload, vectors = _sighting_vectors(service, sighting_id)
    if is_name is not None:
        person = service.memory.require_person(is_name)
        with _enrollment(service, person) as batch:
            added = _add_track_prototypes(
                service, is_name, vectors, source=f"correction:{sighting_id}", batch=batch,
                crop_images=_sighting_crop(payload),
            )
        _relabel_sighting(service, sighting_id, is_name, str(person["role"]), vectors.kind)
        _release_stranger(service, payload.get("person_id"), sighting_id)
        return {"sighting": sighting_id, "is": is_name, "added": added}
    assert not_name is not None
    person = service.memory.require_person(not_name)
    matched = payload.get("person_id")
    if matched != not_name:
        # "That was not Anna" corrects a sighting camd gave to Anna; for any other sighting it would
        # teach a negative nobody asked for (and usually means a mistyped id or name).
        said = f"it was matched to {matched}" if matched else "it was matched to nobody"
        raise EnrollmentError(
            f"sighting {sighting_id} was not matched to {not_name} ({said}); nothing to correct"
        )
    with _enrollment(service, person) as batch:
        added = _add_track_prototypes(
            service, not_name, vectors, source=f"correction:{sighting_id}", batch=batch, negative=True
        )
    if payload.get("person_id") == not_name:
        service.memory.update_sighting(sighting_id, {
            "person_id": None, "identity": None, "global_id": None,
            "identity_class": "unknown_vehicle" if vectors.kind == "vehicle" else "stranger",
            "expires_at": time.time() + service.config.identity.retention_days * 86400.0,
        })  # fmt: skip
    return {"sighting": sighting_id, "not": not_name, "negative_added": added}


# -- people -----------------------------------------------------------------------------------------


def _summary(service: IdentityService, person: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    now = time.time()
    for hit in service.memory.prototypes(person["person_id"], now=now):
        for modality in hit.payload.get("modalities", []):
            key = f"{'not_' if hit.payload.get('negative') else ''}{modality}"
            if hit.payload.get("source") == "same_day":
                key = f"same_day_{modality}"
            counts[key] = counts.get(key, 0) + 1
    return {**person, "prototypes": counts}


def people_list(service: IdentityService, include_strangers: bool = False) -> list[dict[str, Any]]:
    return [_summary(service, p) for p in service.memory.people(include_strangers)]


def person_show(service: IdentityService, name: str, sightings: int = 10) -> dict[str, Any]:
    person = service.memory.require_person(name)
    recent = service.memory.sightings(name)[-sightings:]
    keys = ("sighting_id", "camera", "label", "end_time", "identity_class", "confidence", "evidence", "crop")
    return {**_summary(service, person), "sightings": [{k: s.get(k) for k in keys} for s in recent]}


def rename(service: IdentityService, old: str, new: str) -> dict[str, Any]:
    require_person_name(new)
    return service.memory.rename(old, new)


def forget(service: IdentityService, name: str) -> dict[str, Any]:
    return {"forgotten": name, **service.memory.forget(name)}


__all__ = [
    "Detection",
    "EnrollmentError",
    "TrackChoiceNeeded",
    "UnknownPersonError",
    "clip_tracks",
    "correct",
    "enroll_clip",
    "enroll_photos",
    "enroll_sighting",
    "forget",
    "people_list",
    "person_show",
    "photo_files",
    "read_photo",
    "rename",
]  # fmt: skip
