"""The motion gate's feedback loop, across a camera's two threads.

The gate (camd/vision/motion.py) runs on the camera thread, before the detector; what explains the
motion it sees is learnt later, on the consumer thread: where the open tracks are heading, and which
moving regions the detector has answered for. The consumer publishes that after each frame as a
`GateView`; the camera thread reads a view when it gates the next frame.

A file read as fast as it decodes is replayed exactly: the gate for the n-th frame sees the view the
consumer published for frame n - REPLAY_LAG_FRAMES, not whatever it has reached by then, so the same
file gives the same detections, tracks and identities on every run, however loaded the machine.
A live camera (or a file played in real time) cannot wait: its gate reads the newest view.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from camd.types import Box, Frame
from camd.vision.far import FarLook
from camd.vision.motion import MotionGate

_POLL_S = 0.1
MAX_PREDICT_S = 1.0  # the gate extrapolates a track's box at most this far past its last detection
# Replay: the detector works on one frame while the consumer handles the one before it.
REPLAY_LAG_FRAMES = 2


@dataclass(frozen=True, slots=True)
class TrackMotion:
    """A track's last detected box and its velocity (px/s), for the gate's prediction."""

    box: Box
    at: float
    velocity: Box = (0.0, 0.0, 0.0, 0.0)

    def box_at(self, t: float) -> Box:
        dt = min(max(0.0, t - self.at), MAX_PREDICT_S)
        return tuple(b + v * dt for b, v in zip(self.box, self.velocity, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class GateView:
    """What the consumer knew after handling its `order`-th frame, for the gate on the camera thread."""

    order: int
    tracks: tuple[TrackMotion, ...] = ()
    examined: tuple[Box, ...] = ()  # moving regions of the frame the detector last answered for


class GateFeedback:
    """One camera's gate with its feedback. The camera thread calls `should_detect`; the consumer
    thread calls `answered`, `moved` and `publish`."""

    def __init__(self, gate: MotionGate, replay: bool) -> None:
        """replay: a file read as fast as it decodes (exact replay, see the module docstring)."""
        self.gate = gate
        self.replay = replay
        self._views: deque[GateView] = deque([GateView(0)], maxlen=REPLAY_LAG_FRAMES + 2)
        self._views_changed = threading.Condition()
        self._submitted = 0  # frames gated (camera thread)
        # Consumer thread only:
        self.motion: dict[int, TrackMotion] = {}
        self._examined: tuple[Box, ...] = ()

    # -- camera thread -------------------------------------------------------------------------

    def should_detect(
        self, frame: Frame, waiting: Callable[[], bool]
    ) -> tuple[bool, tuple[Box, ...] | None, FarLook | None]:
        """Whether the detector should see this frame, and (when it should) the moving regions it will
        be answering for and what the far pass is shown (when the gate serves one: its own regions, the
        open tracks' predicted boxes). `waiting()`: the consumer is still there to publish the view a
        replay waits for."""
        self._submitted += 1
        view = self._view(max(0, self._submitted - REPLAY_LAG_FRAMES), waiting)
        self.gate.examined(view.examined)
        boxes = tuple(motion.box_at(frame.timestamp) for motion in view.tracks)
        detect = self.gate.should_detect(frame.image, frame.timestamp, boxes)
        if not detect:
            return False, None, None
        far = None
        if self.gate.far is not None:
            far_regions = self.gate.last_far_regions
            # Every open track's predicted box (the pass keeps the small ones it did not find again):
            # only those detected within MAX_PREDICT_S found fewer far walkers (docs/performance.md).
            far = FarLook(None if far_regions is None else tuple(far_regions), boxes)
        return True, tuple(self.gate.last_regions), far

    def skip(self) -> None:
        """A frame that goes by without the gate (the detect switch is off): it still counts."""
        self._submitted += 1

    def _view(self, order: int, waiting: Callable[[], bool]) -> GateView:
        """Replay: the view after the consumer's `order`-th frame, waiting for it; live: the newest."""
        with self._views_changed:
            while self.replay and self._views[-1].order < order:
                if not waiting():
                    break  # shutting down, or the consumer failed: the lane refuses the frame anyway
                self._views_changed.wait(_POLL_S)
            if self.replay:
                for view in self._views:
                    if view.order == order:
                        return view
            return self._views[-1]

    # -- consumer thread -----------------------------------------------------------------------

    def answered(self, regions: Sequence[Box]) -> None:
        """The detector answered for a frame whose moving `regions` the gate saw: explained now."""
        self._examined = tuple(regions)

    def moved(self, tracks: Mapping[int, tuple[Box, float]], now: float) -> None:
        """Per open track (box, when last seen): its box and velocity, so the gate checks motion
        against where each tracked object should be now, not where it was at the last detection."""
        motion: dict[int, TrackMotion] = {}
        for track_id, (box, last_seen) in tracks.items():
            previous = self.motion.get(track_id)
            if previous is not None and last_seen == now and now > previous.at:
                dt = now - previous.at
                step = tuple((b - p) / dt for b, p in zip(box, previous.box, strict=True))
                # Smoothed: one jumpy box must not throw the prediction off.
                velocity = tuple(0.5 * s + 0.5 * v for s, v in zip(step, previous.velocity, strict=True))
                motion[track_id] = TrackMotion(box, now, velocity)  # type: ignore[arg-type]
            elif previous is not None and last_seen != now:
                motion[track_id] = previous  # not seen this frame: keep predicting from the last sighting
            else:
                motion[track_id] = TrackMotion(box, last_seen)
        self.motion = motion

    def publish(self, order: int) -> None:
        """The view after the consumer's `order`-th frame, once its tracks are known (identity's work
        after that changes none of it: a second call for the same frame does nothing)."""
        with self._views_changed:
            if self._views[-1].order == order:
                return
            self._views.append(GateView(order, tuple(self.motion.values()), self._examined))
            self._views_changed.notify_all()
