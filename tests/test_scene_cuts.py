"""A shot cut ends every open track: nobody's track (or name) is carried into the next shot."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from camd.config import DetectorConfig, ObjectsConfig, TrackerConfig
from camd.types import Frame
from camd.vision.detector import create_detector
from camd.vision.offline import clip_frames, tracked_frames
from camd.vision.scenecut import SceneCuts
from camd.vision.tracker import ObjectTracker
from tests.support.data import shared_data


def photo(models_dir: Path, name: str) -> np.ndarray:
    image = cv2.imread(str(models_dir / "sample_photos" / f"{name}.jpg"))
    assert image is not None
    return image


def track_ids(models_dir: Path, shots: list[np.ndarray], cuts: SceneCuts | None) -> list[set[int]]:
    """The ids tracked on 3 frames of each shot in turn, through the real detector and tracker."""
    objects = ObjectsConfig()
    tracker = ObjectTracker.for_objects(TrackerConfig(), objects, fps=5.0)
    images = [shot for shot in shots for _ in range(3)]
    frames = [Frame("door", i, 1000.0 + i / 5.0, image) for i, image in enumerate(images)]
    detector = create_detector(DetectorConfig(), models_dir)
    seen = tracked_frames(frames, detector, objects, tracker, cuts)
    return [{t.track_id for t in frame.tracked} for frame in seen]


def test_a_cut_starts_new_tracks_where_the_tracker_would_carry_one_over(models_dir: Path) -> None:
    zidane = photo(models_dir, "zidane")
    mirrored = np.ascontiguousarray(zidane[:, ::-1])  # another shot: the two men stand where the other was
    carried = track_ids(models_dir, [zidane, mirrored], cuts=None)
    assert carried[2] & carried[5], "without the cut check the tracker carries an id into the next shot"
    ids = track_ids(models_dir, [zidane, mirrored], cuts=SceneCuts.for_tracker(TrackerConfig()))
    before, after = set().union(*ids[:3]), set().union(*ids[3:])
    assert before and after and not before & after, ids
    assert SceneCuts.for_tracker(TrackerConfig(scene_cut=0)) is None  # the setting that turns it off


def test_a_shaking_camera_is_not_a_cut(models_dir: Path) -> None:
    zidane = photo(models_dir, "zidane")
    shaken = np.roll(zidane, 8, axis=1)
    ids = track_ids(models_dir, [zidane, shaken], cuts=SceneCuts())
    assert ids[2] and ids[2] == ids[5]  # both men keep their ids
    cuts = SceneCuts()
    darker = cv2.convertScaleAbs(zidane, alpha=0.8)  # auto-exposure stepping down
    assert [cuts.cut(image) for image in (zidane, shaken, darker, photo(models_dir, "bus"))] == [
        False, False, False, True,
    ]  # fmt: skip


@pytest.mark.shared_data
def test_cuts_found_in_an_edited_clip_and_never_on_fixed_cameras() -> None:
    """The stage clip's three cuts (seen by eye at 0.7 s, 2.8 s and 7.1 s), not its fast handheld
    close-ups; none on the fixed cameras, at the detect rates the daemon uses."""
    stage = shared_data("faces/examples/short_hamilton_clip.mp4")
    for fps in (10.0, 5.0):
        cuts = SceneCuts()
        found = [frame.timestamp for frame in clip_frames(stage, fps) if cuts.cut(frame.image)]
        assert len(found) == 3, found
        assert all(abs(t - s) <= 1.5 / fps for t, s in zip(found, (0.7, 2.8, 7.1), strict=True)), found
    for clip in ("video/vtest.avi", "video/supervision_walking.mp4"):
        cuts = SceneCuts()
        assert not [f.timestamp for f in clip_frames(shared_data(clip), 5.0) if cuts.cut(f.image)], clip
