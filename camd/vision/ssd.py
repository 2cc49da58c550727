"""COCO SSD MobileNetV2 (TensorFlow frozen graph) through OpenCV DNN: the fast default detector."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from camd.types import Detection
from camd.vision.detector import DetectorError, check_image, clip_box

# The TF Object Detection API numbers COCO's 90 category ids with gaps (1 person ... 8 truck).
COCO_TF_LABELS = {1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 6: "bus", 8: "truck"}
DEFAULT_INPUT_SIZE = 300  # what the model was trained at


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
    """input_size trades speed for small objects: 300 is the trained size; larger finds
    far-away people better at roughly quadratic cost."""

    name = "ssd"

    def __init__(
        self, path: Path, *, threads: int = 2, min_score: float = 0.25, input_size: int | None = None
    ) -> None:
        graph, text = find_ssd_files(Path(path))
        cv2.setNumThreads(threads)  # process-wide in OpenCV; the detector is its main user
        if not hasattr(cv2.dnn, "readNetFromTensorflow"):
            raise DetectorError(
                f"OpenCV {cv2.__version__} has no TensorFlow importer (removed in 5.1), which the SSD "
                "detector needs: install 'opencv-python>=4.10,<5.1' (as camd's own requirements say) "
                "or set detector.backend: yolo"
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
