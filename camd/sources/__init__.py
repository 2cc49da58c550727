"""Camera sources: RTSP streams and files as iterators of sampled frames, with reconnects."""

from camd.sources.backoff import Backoff
from camd.sources.status import CameraState, CameraStatus
from camd.sources.stream import CameraSource, FrameSampler, SourceTarget, StreamError, resolve_target

__all__ = [
    "Backoff",
    "CameraSource",
    "CameraState",
    "CameraStatus",
    "FrameSampler",
    "SourceTarget",
    "StreamError",
    "resolve_target",
]
