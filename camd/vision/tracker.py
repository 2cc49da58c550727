"""Stable per-camera track ids, from Roboflow's ByteTrack (the `trackers` package).

One ByteTrack runs per label group (people, vehicles) so that a box of one group never inherits an
id of the other; SSD flips car/truck/bus on the same vehicle, so vehicle labels share one tracker.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from camd.config import ObjectsConfig, TrackerConfig
from camd.types import Detection, TrackedObject, kind_of


class ObjectTracker:
    """Turns each frame's detections into tracked objects with ids unique on this camera."""

    def __init__(self, config: TrackerConfig, fps: float, activation_score: float = 0.5) -> None:
        self._config = config
        self._fps = fps
        self._activation_score = activation_score
        self._trackers: dict[str, ByteTrackTracker] = {}
        self._ids: dict[tuple[str, int], int] = {}  # (group, ByteTrack id) -> our id
        self._next_id = itertools.count(1)

    @classmethod
    def for_objects(cls, config: TrackerConfig, objects: ObjectsConfig, fps: float) -> ObjectTracker:
        """The daemon's tracker for a camera: a new track may start from a box as weak as the lowest
        min_score of the labels it tracks (the events stage holds back its `new` until its label's bar)."""
        activation = min(objects.filter_for(label).min_score for label in objects.track)
        return cls(config, fps=fps, activation_score=activation)

    def _tracker_for(self, group: str) -> ByteTrackTracker:
        if group not in self._trackers:
            self._trackers[group] = ByteTrackTracker(
                # ByteTrack counts its buffer in 30 fps frames whatever frame_rate says.
                lost_track_buffer=max(1, round(self._config.lost_track_s * 30)),
                frame_rate=self._fps,
                track_activation_threshold=self._activation_score,
                high_conf_det_threshold=self._activation_score,
                minimum_consecutive_frames=self._config.min_hits,
                minimum_iou_threshold=self._config.match_iou,
            )
        return self._trackers[group]

    def reset(self) -> None:
        """Forget every track (a shot cut): the next boxes start new tracks, with new ids."""
        self._trackers.clear()
        self._ids.clear()

    def update(self, detections: list[Detection], timestamp: float) -> list[TrackedObject]:
        """Feed every group each frame (also with no detections) so lost tracks age out in time."""
        by_group: dict[str, list[Detection]] = {"person": [], "vehicle": []}
        for det in detections:
            by_group[kind_of(det.label)].append(det)
        tracked: list[TrackedObject] = []
        for group, dets in by_group.items():
            if not dets and group not in self._trackers:
                continue
            tracked.extend(self._update_group(group, dets, timestamp))
        return tracked

    def _update_group(self, group: str, dets: list[Detection], timestamp: float) -> list[TrackedObject]:
        if dets:
            sv_dets = sv.Detections(
                xyxy=np.array([d.box for d in dets], dtype=np.float32),
                confidence=np.array([d.score for d in dets], dtype=np.float32),
                class_id=np.arange(len(dets)),  # index back into dets: ByteTrack may reorder its output
            )
        else:
            sv_dets = sv.Detections.empty()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # supervision deprecation chatter
            result = self._tracker_for(group).update(sv_dets, timestamp=timestamp)
        self._forget_dead_ids(group)
        out: list[TrackedObject] = []
        if result.tracker_id is None or result.class_id is None:
            return out
        for index, raw_id in zip(result.class_id, result.tracker_id, strict=True):
            if raw_id < 0:  # not (yet) a confirmed track
                continue
            key = (group, int(raw_id))
            if key not in self._ids:
                self._ids[key] = next(self._next_id)
            out.append(TrackedObject(track_id=self._ids[key], detection=dets[int(index)]))
        return out

    def _forget_dead_ids(self, group: str) -> None:
        """Drop id mappings of tracks ByteTrack has let go: the daemon runs for months."""
        if len(self._ids) < 256:
            return
        alive = {int(t.tracker_id) for t in self._trackers[group].tracks}
        for key in [k for k in self._ids if k[0] == group and k[1] not in alive]:
            del self._ids[key]
