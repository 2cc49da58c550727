"""A real detector wrapped for tests that need to see or slow down its calls."""

from __future__ import annotations

import threading
import time

import numpy as np

from camd.types import Detection
from camd.vision.detector import Detector


class RecordingDetector:
    """The real detector, remembering which images it was given, optionally slowed down."""

    name = "recording"

    def __init__(self, inner: Detector, delay_s: float = 0.0, hold: threading.Event | None = None) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.hold = hold  # when given, every call waits for it (a call that lasts as long as the test needs)
        self.seen: list[int] = []  # id() of each image, in call order

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.seen.append(id(image))
        if self.hold is not None:
            self.hold.wait(30)
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.inner.detect(image)
