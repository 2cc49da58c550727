"""Vision stages: the detector contract (protocol.py), its backends (ssd, yolo) on their runtimes
(OpenVINO by default, OpenCV DNN, onnxruntime), the far-people pass and the inference pool they share,
the motion gate and its feedback, optical flow between detections, the tracker, and a clip's frames ->
tracks offline.
Evidence for identity (embedders, face, pose, gait) lives in camd/identity/evidence."""

from camd.vision.detector import Detector, DetectorError, create_detector, filter_detections

__all__ = ["Detector", "DetectorError", "create_detector", "filter_detections"]
