"""YOLOv8 / YOLO11-style ONNX exports through OpenVINO (the default) or onnxruntime (no torch, no
ultralytics).

Works with any `yolo export format=onnx` detection model: one output (1, 4+nc, N) of
(cx, cy, w, h, class scores...) in letterboxed input pixels, NMS not baked in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cv2
import numpy as np

from camd.types import TRACKED_LABELS, Detection
from camd.vision.protocol import DetectorError, check_image, clip_box

PAD_VALUE = 114  # the grey Ultralytics pads with; the model was trained on it
DEFAULT_INPUT_SIZE = 640
# COCO-80 order (Ultralytics exports): the indices of the classes camd tracks.
COCO80_TRACKED = {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 5: "bus", 7: "truck"}
COCO80_CLASSES = 80


def class_labels(
    num_classes: int, names: dict[int, str] | None, class_map: dict[int, str] | None
) -> dict[int, str]:
    """Class index -> camd label for the classes camd tracks; the rest are dropped.

    An explicit class_map wins; else the model's own `names` metadata; else COCO order for 80 classes.
    """
    if class_map:
        mapped = {int(k): v for k, v in class_map.items() if 0 <= int(k) < num_classes}
    elif names:
        mapped = {k: v for k, v in names.items() if v in TRACKED_LABELS}
    elif num_classes == COCO80_CLASSES:
        mapped = dict(COCO80_TRACKED)
    else:
        raise DetectorError(
            f"the YOLO model has {num_classes} classes and no class names in its metadata; "
            "set detector.class_map (class index -> one of " + ", ".join(sorted(TRACKED_LABELS)) + ")"
        )
    if not mapped:
        raise DetectorError(
            f"none of the YOLO model's classes ({names or num_classes}) is one camd tracks "
            f"({sorted(TRACKED_LABELS)}); set detector.class_map to say which class is which"
        )
    return mapped


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Resize keeping the aspect ratio, pad to size x size: (padded, scale, pad_x, pad_y)."""
    height, width = image.shape[:2]
    scale = min(size / height, size / width)
    new_w, new_h = round(width * scale), round(height * scale)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = (size - new_w) / 2, (size - new_h) / 2
    top, left = round(pad_y - 0.1), round(pad_x - 0.1)  # the odd pixel goes bottom/right, as Ultralytics
    padded = cv2.copyMakeBorder(
        resized, top, size - new_h - top, left, size - new_w - left, cv2.BORDER_CONSTANT,
        value=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )  # fmt: skip
    return padded, scale, float(left), float(top)


class YoloDetector:
    """nms_iou: lower merges more overlapping boxes (fewer duplicates, but two people standing
    close may become one box); higher keeps them apart."""

    name = "yolo"

    def __init__(
        self,
        path: Path,
        *,
        threads: int = 2,
        min_score: float = 0.25,
        nms_iou: float = 0.45,
        class_map: dict[int, str] | None = None,
        input_size: int | None = None,
        runtime: str = "openvino",
        precision: str = "f32",
    ) -> None:
        path = Path(path)
        if path.is_dir():
            models = sorted(path.glob("*.onnx"))
            if len(models) != 1:
                raise DetectorError(
                    f"YOLO model folder {path} must hold exactly one .onnx file, found {models}"
                )
            path = models[0]
        self.runtime = runtime
        if runtime == "openvino":
            runner: _Runner = _OpenVinoRunner(path, threads, precision)
        else:
            runner = _OnnxRuntimeRunner(path, threads)
        self._runner = runner
        self._dtype = runner.input_dtype
        self._size = self._input_size(path, runner.input_shape, input_size)
        # A model exported with dynamic=True takes several frames per call; a fixed batch of 1 does not.
        self.batches = not isinstance(runner.input_shape[0], int) if runner.input_shape else False

        output_shape = runner.output_shape
        channels = output_shape[1] if len(output_shape) == 3 else None
        names = _parse_names(runner.names_text)
        if not isinstance(channels, int) or channels < 5:
            raise DetectorError(
                f"YOLO model {path} has output shape {output_shape}; camd reads (1, 4+classes, boxes) "
                "from YOLOv8/YOLO11 detection exports (`yolo export format=onnx`, nms=False)"
            )
        if names is not None and len(names) != channels - 4:
            raise DetectorError(
                f"YOLO model {path}: {len(names)} class names but {channels - 4} class channels; "
                "is it a YOLOv5-style export (with objectness) or a segmentation/pose model? "
                "camd reads YOLOv8/YOLO11 detection exports"
            )
        self._labels = class_labels(channels - 4, names, class_map)
        self._label_ids = {label: index for index, label in enumerate(sorted(set(self._labels.values())))}
        self.min_score = min_score
        self.nms_iou = nms_iou

    @staticmethod
    def _input_size(path: Path, shape: list[object], wanted: int | None) -> int:
        fixed = shape[2] if len(shape) == 4 and isinstance(shape[2], int) else None
        if fixed is not None and wanted is not None and wanted != fixed:
            raise DetectorError(
                f"detector.input_size is {wanted} but the model {path.name} takes a fixed "
                f"{fixed}x{fixed} input; remove input_size or export the model at imgsz={wanted}"
            )
        return fixed or wanted or DEFAULT_INPUT_SIZE

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """One call for all frames when the model has a dynamic batch axis, else one call each."""
        prepared = [self._prepare(image) for image in images]
        if self.batches and len(images) > 1:
            blob = np.concatenate([blob for blob, *_ in prepared])
            raw = self._runner.run(blob)
            outputs = [raw[i] for i in range(len(images))]
        else:
            outputs = [self._runner.run(blob)[0] for blob, *_ in prepared]
        return [
            self._parse(output, image.shape[1], image.shape[0], scale, pad_x, pad_y)
            for output, image, (_, scale, pad_x, pad_y) in zip(outputs, images, prepared, strict=True)
        ]

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        check_image(image)
        padded, scale, pad_x, pad_y = letterbox(image, self._size)
        blob = cv2.dnn.blobFromImage(padded, scalefactor=1 / 255.0, swapRB=True).astype(
            self._dtype, copy=False
        )
        return blob, scale, pad_x, pad_y

    def _parse(
        self, output: np.ndarray, width: int, height: int, scale: float, pad_x: float, pad_y: float
    ) -> list[Detection]:
        rows = np.asarray(output, dtype=np.float32).T  # (N, 4 + nc)

        scores_all = rows[:, 4:]
        class_ids = scores_all.argmax(axis=1)
        scores = scores_all[np.arange(len(rows)), class_ids]
        keep = scores >= self.min_score
        keep &= np.isin(class_ids, list(self._labels))
        rows, class_ids, scores = rows[keep], class_ids[keep], scores[keep]
        if not len(rows):
            return []

        # Boxes back to frame pixels: undo the padding, then the scale.
        cx, cy, bw, bh = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        x1 = (cx - bw / 2 - pad_x) / scale
        y1 = (cy - bh / 2 - pad_y) / scale
        x2 = (cx + bw / 2 - pad_x) / scale
        y2 = (cy + bh / 2 - pad_y) / scale
        labels = [self._labels[int(c)] for c in class_ids]
        # NMS per camd label, not per model class: 'Normal' and 'Fall' boxes on one person merge.
        groups = [self._label_ids[label] for label in labels]
        xywh = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).tolist()
        kept = cv2.dnn.NMSBoxesBatched(xywh, scores.tolist(), groups, self.min_score, self.nms_iou)
        detections = []
        for index in np.asarray(kept, dtype=int).reshape(-1):
            box = clip_box(
                float(x1[index]), float(y1[index]), float(x2[index]), float(y2[index]), width, height
            )
            if box[2] > box[0] and box[3] > box[1]:
                detections.append(Detection(label=labels[index], score=float(scores[index]), box=box))
        detections.sort(key=lambda det: det.score, reverse=True)
        return detections


class _Runner:
    """What YoloDetector needs of a runtime: the input's shape and type, the output's shape, the
    Ultralytics `names` metadata (a Python dict literal) and one inference call."""

    input_shape: list[object]
    input_dtype: type
    output_shape: list[object]
    names_text: str | None

    def run(self, blob: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _load_error(path: Path, exc: Exception, runtime: str) -> DetectorError:
    return DetectorError(
        f"{runtime} could not load the YOLO model {path}: the file is damaged or not an ONNX model "
        f"({str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}); re-prepare "
        "it (delete its folder under models_dir) or export again with `yolo export model=... format=onnx`"
    )


class _OnnxRuntimeRunner(_Runner):
    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors (InvalidProtobuf, Fail...)
            raise _load_error(path, exc, "onnxruntime") from None
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        self.input_shape = list(model_input.shape)
        self.input_dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
        self.output_shape = list(self._session.get_outputs()[0].shape)
        self.names_text = self._session.get_modelmeta().custom_metadata_map.get("names")

    def run(self, blob: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input_name: blob})[0]


class _OpenVinoRunner(_Runner):
    def __init__(self, path: Path, threads: int, precision: str) -> None:
        from camd.vision.ssd_openvino import compile_cpu, openvino_core, ready_request

        core = openvino_core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises its own untyped errors
            raise _load_error(path, exc, "OpenVINO") from None
        shape = model.inputs[0].get_partial_shape()
        self.input_shape = [dim.get_length() if dim.is_static else None for dim in shape]
        half = model.inputs[0].get_element_type().get_type_name() == "f16"
        self.input_dtype = np.float16 if half else np.float32
        out = model.outputs[0].get_partial_shape()
        self.output_shape = [dim.get_length() if dim.is_static else None for dim in out]
        key = ["framework", "names"]
        self.names_text = model.get_rt_info(key).astype(str) if model.has_rt_info(key) else None
        self._request = ready_request(compile_cpu(core, model, threads, precision))

    def run(self, blob: np.ndarray) -> np.ndarray:
        return np.asarray(self._request.infer({0: blob})[0])


def _parse_names(text: str | None) -> dict[int, str] | None:
    """Ultralytics stores `names` as a Python dict literal in the ONNX metadata."""
    if not text:
        return None
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if not isinstance(names, dict):
        return None
    return {int(k): str(v) for k, v in names.items()}
