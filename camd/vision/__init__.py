"""Vision stages: detector backends (ssd, yolo) now; tracker, embedders, pose, face, gait later."""

from camd.vision.detector import Detector, DetectorError, create_detector, filter_detections

__all__ = ["Detector", "DetectorError", "create_detector", "filter_detections"]
