"""COCO SSD MobileNetV2 (TensorFlow frozen graph): its labels and files, the box decoding and NMS camd
runs after the cut OpenVINO model (camd/vision/ssd_openvino.py, the default), and the whole graph
through OpenCV DNN (`detector.runtime: opencv`, the reference the others are measured against)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from camd.types import Detection
from camd.vision.protocol import DetectorError, check_image, clip_box

# The TF Object Detection API numbers COCO's 90 category ids with gaps (1 person ... 8 truck).
COCO_TF_LABELS = {1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 6: "bus", 8: "truck"}
DEFAULT_INPUT_SIZE = 300  # what the model was trained at
# The TF Object Detection API's box coder (ssd_mobilenet_v2_coco pipeline.config): scale factors of
# (y, x, h, w), and its NMS: per class, IoU 0.6, at most 100 boxes in all.
BOX_SCALES = np.array([10.0, 10.0, 5.0, 5.0], np.float32)
NMS_IOU = 0.6
MAX_DETECTIONS = 100
_CLASS_IDS = np.array(sorted(COCO_TF_LABELS), np.int64)


def decode(
    encodings: np.ndarray,
    scores: np.ndarray,
    anchors: np.ndarray,
    min_score: float,
    width: int,
    height: int,
) -> list[Detection]:
    """Per-anchor box encodings (N, 4: ty, tx, th, tw) and sigmoid class scores (N, 91) -> camd's
    detections in frame pixels, after per-label NMS. Only camd's classes are looked at."""
    wanted = scores[:, _CLASS_IDS]  # (N, 6)
    anchor_ids, class_cols = np.nonzero(wanted >= min_score)
    if not len(anchor_ids):
        return []
    enc = encodings[anchor_ids] / BOX_SCALES
    anc = anchors[anchor_ids]
    anchor_h, anchor_w = anc[:, 2] - anc[:, 0], anc[:, 3] - anc[:, 1]
    center_y = enc[:, 0] * anchor_h + anc[:, 0] + anchor_h / 2
    center_x = enc[:, 1] * anchor_w + anc[:, 1] + anchor_w / 2
    half_h, half_w = np.exp(enc[:, 2]) * anchor_h / 2, np.exp(enc[:, 3]) * anchor_w / 2
    x1, x2 = (center_x - half_w) * width, (center_x + half_w) * width
    y1, y2 = (center_y - half_h) * height, (center_y + half_h) * height
    box_scores = wanted[anchor_ids, class_cols]
    xywh = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).tolist()
    kept = cv2.dnn.NMSBoxesBatched(xywh, box_scores.tolist(), class_cols.tolist(), min_score, NMS_IOU)
    kept = np.asarray(kept, dtype=int).reshape(-1)
    kept = kept[np.argsort(-box_scores[kept], kind="stable")][:MAX_DETECTIONS]
    out = []
    for index in kept:
        box = clip_box(float(x1[index]), float(y1[index]), float(x2[index]), float(y2[index]), width, height)
        if box[2] > box[0] and box[3] > box[1]:
            label = COCO_TF_LABELS[int(_CLASS_IDS[class_cols[index]])]
            out.append(Detection(label=label, score=float(box_scores[index]), box=box))
    return out


def find_ssd_files(path: Path) -> tuple[Path, Path]:
    """(frozen graph .pb, text graph .pbtxt) from a folder holding both or a .pb with a .pbtxt beside it."""
    folder = path if path.is_dir() else path.parent
    graphs = [path] if path.is_file() else sorted(folder.glob("*.pb"))
    texts = sorted(folder.glob("*.pbtxt"))
    if len(graphs) != 1 or graphs[0].suffix != ".pb" or len(texts) != 1:
        raise DetectorError(
            f"SSD model {path}: expected one frozen graph (.pb) and one text graph (.pbtxt) in {folder}, "
            f"found {[g.name for g in graphs]} and {[t.name for t in texts]}"
        )
    return graphs[0], texts[0]


class SsdDetector:
    """The whole frozen graph through OpenCV DNN (`detector.runtime: opencv`).

    input_size trades speed for small objects: 300 is the trained size; larger finds
    far-away people better at roughly quadratic cost."""

    name = "ssd"
    runtime = "opencv"

    def __init__(
        self, path: Path, *, threads: int = 2, min_score: float = 0.25, input_size: int | None = None
    ) -> None:
        graph, text = find_ssd_files(Path(path))
        cv2.setNumThreads(threads)  # process-wide in OpenCV; the detector is its main user
        if not hasattr(cv2.dnn, "readNetFromTensorflow"):
            raise DetectorError(
                f"OpenCV {cv2.__version__} has no TensorFlow importer (removed in 5.1), which the SSD "
                "graph through OpenCV needs: set detector.runtime: openvino (the default, no OpenCV importer "
                "needed) or install 'opencv-python>=4.10,<5.1'"
            )
        try:
            self._net = cv2.dnn.readNetFromTensorflow(str(graph), str(text))
        except cv2.error as exc:
            raise DetectorError(
                f"OpenCV could not load the SSD model {graph} with {text.name}: the file is damaged or not a "
                f"TensorFlow frozen graph ({str(exc).strip().splitlines()[-1]}); re-prepare the model "
                "(delete its folder under models_dir) or fix detector.model"
            ) from None
        self._size = input_size or DEFAULT_INPUT_SIZE
        self.min_score = min_score

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Several frames (any sizes) in one forward pass; one list of detections per frame."""
        for image in images:
            check_image(image)
        # The graph normalizes pixels itself; OpenCV only resizes (no crop) and swaps BGR -> RGB.
        blob = cv2.dnn.blobFromImages(images, size=(self._size, self._size), swapRB=True, crop=False)
        self._net.setInput(blob)
        rows = self._net.forward().reshape(-1, 7)  # [image, class, score, x1, y1, x2, y2], coords 0..1
        out: list[list[Detection]] = [[] for _ in images]
        for image_id, class_id, score, x1, y1, x2, y2 in rows:
            label = COCO_TF_LABELS.get(int(class_id))
            index = int(image_id)
            if label is None or score < self.min_score or not 0 <= index < len(images):
                continue
            height, width = images[index].shape[:2]
            box = clip_box(x1 * width, y1 * height, x2 * width, y2 * height, width, height)
            if box[2] > box[0] and box[3] > box[1]:
                out[index].append(Detection(label=label, score=float(score), box=box))
        return out
