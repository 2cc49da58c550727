"""Views and the person check on real footage (camd/identity/views.py).

- supervision_walking.mp4: the default detector calls the whole frame a "person" (score 0.78, for the
  whole clip). Through the real daemon it must come out without an identity, with the reason in its
  evidence, while the walkers around it are still decided.
- Body shape is compared only between like views: a shape measured from the side is never held against
  one enrolled from the front (a view must not turn a passing body match into "stranger").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from camd.config.schema import Config
from camd.daemon import Daemon
from camd.eval.tracks import decode, person_tracks, track_clip
from camd.identity.evidence.gait import PoseSample, gait_signature
from camd.identity.matcher import TrackVectors, shape_list
from camd.identity.model_files import model_file
from camd.publish.frigate import event_payload
from tests.support.data import shared_data
from tests.support.identity_data import identity_config
from tests.support.media import clip_span

pytest_plugins = ["tests.support.identity"]


@pytest.mark.slow
def test_a_whole_frame_false_person_gets_no_identity_and_says_why(tmp_path: Path, models_dir: Path) -> None:
    clip = clip_span(shared_data("video/supervision_walking.mp4"), tmp_path / "head.mp4", end_s=3.0)
    config = identity_config(tmp_path / "state", models_dir)
    daemon_config = Config.model_validate({
        **config.model_dump(mode="json"), "cameras": {"street": {"url": str(clip), "detect_fps": 5}},
    })  # fmt: skip
    events: list[dict[str, Any]] = []
    Daemon(daemon_config, extra_sinks=[lambda event: events.append(event_payload(event))],
           mqtt=False).run(install_signals=False)  # fmt: skip

    ends = [e["after"] for e in events if e["type"] == "end" and e["after"]["label"] == "person"]
    frame_area = 1280 * 720
    whole = [a for a in ends if (a["box"][2] - a["box"][0]) * (a["box"][3] - a["box"][1]) > 0.8 * frame_area]
    assert len(whole) == 1, [a["box"] for a in ends]
    false_person = whole[0]
    assert false_person["identity"] is None and false_person["identity_class"] is None
    assert false_person["global_id"] is None
    evidence = false_person["evidence"]
    assert "does not look like a person" in evidence["reason"] and evidence["person"] < 0.2
    # The gate is not a blanket: no walker in the same frames is turned away by it.
    walkers = [a for a in ends if a is not false_person]
    assert len(walkers) >= 4 and not [a["evidence"] for a in walkers if a["evidence"].get("reason")]


def _walker_signature(models_dir: Path) -> tuple[Any, np.ndarray]:
    """The body shape and mean crop of vtest's longest person track in its first 10 s, from real poses."""
    from camd.identity.evidence.pose import MoveNetPose

    clip = shared_data("video/vtest.avi")
    tracks = person_tracks(track_clip(clip, models_dir, fps=5, last_frame=100))
    longest = max(tracks.values(), key=lambda t: len(t.boxes))
    pose = MoveNetPose(model_file(models_dir, "movenet"))
    samples, crops = [], []
    for frame in decode(clip, 5, 100):
        box = longest.boxes.get(frame.index)
        if box is None:
            continue
        samples.append(PoseSample(frame.pts, box, pose.keypoints(frame.image, [box])[0]))
        x1, y1, x2, y2 = (int(v) for v in box)
        crops.append(frame.image[max(0, y1):y2, max(0, x1):x2])
    return gait_signature(samples), crops[len(crops) // 2]


@pytest.mark.slow
def test_body_shape_is_compared_only_between_like_views(service_factory: Any, models_dir: Path) -> None:
    signature, crop = _walker_signature(models_dir)
    assert signature.proportions, "the walker's poses gave no body shape"
    service = service_factory()
    body, colour = service.embed_crop("person", crop)
    assert body is not None
    # Enrolled from the front: their body look, and their shape from that view.
    service.memory.add_prototype("ann", {"body": body}, source="clip")
    service.memory.add_prototype("ann", {}, source="clip", shape=shape_list(signature), view="front")
    service.memory.save_person({"person_id": "ann", "name": "ann", "role": "family", "kind": "person"})

    # Another person's proportions: each ratio 40% smaller or 60% larger.
    scaled = {k: v * (1.6 if i % 2 else 0.6) for i, (k, v) in enumerate(signature.proportions.items())}
    other = type(signature)(proportions=scaled)
    now = 2_000_000.0

    def decide(view: str | None) -> Any:
        track = TrackVectors(kind="person", body=body, colour=colour, body_crops=5, camera="yard",
                             shape=other, shape_view=view)  # type: ignore[arg-type]  # fmt: skip
        return service.matcher.decide(track, now)

    front, side, unknown = decide("front"), decide("side"), decide(None)
    # Like views: the shape is compared (and disagrees). Unlike or unknown views: not compared at all,
    # so the passing body match names ann exactly as it would with no shape.
    assert front.evidence["gait"] is not None
    assert side.evidence["gait"] is None and unknown.evidence["gait"] is None
    without_shape = service.matcher.decide(
        TrackVectors(kind="person", body=body, colour=colour, body_crops=5, camera="yard"), now
    )
    assert side.name == unknown.name == without_shape.name == "ann"
    assert side.confidence == pytest.approx(without_shape.confidence)
