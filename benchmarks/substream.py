"""What a detect substream saves: one camera's pipeline on the main stream alone against the same
pipeline detecting on a substream and cropping from the main stream on demand.

    PYTHONPATH=. .venv/bin/python benchmarks/substream.py [--clip PATH] [--sub-width 640]

The clip (default supervision_walking.mp4, 1280x720) is re-encoded twice with a camera-like GOP
of one second: at its own size (the main stream) and at `--sub-width` (the substream). Both runs
use the real detector and identity models; figures: frames/s, CPU seconds, and how many
main-stream frames the substream run decoded and converted against the packets it read.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import av

from camd.bench import decode_only
from camd.config import CameraConfig, Config, MqttConfig
from camd.identity.extractors import Extractors
from camd.identity.service import IdentityService
from camd.pipeline import CameraPipeline
from camd.vision.detector import create_detector
from tests.support.data import SHARED_DATA
from tests.support.media import transcode


def run(config: Config, models: Extractors) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="camd-substream-") as state:
        identity = IdentityService(config.model_copy(update={"state_dir": Path(state)}), extractors=models)
        detector = create_detector(config.detector, config.models_path)
        pipeline = CameraPipeline(
            "cam", config, detector, lambda _e: None, threading.Event(), identity=identity
        )
        wall, cpu = time.perf_counter(), time.process_time()
        pipeline.run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        identity.close()
    main = pipeline.main.stats if pipeline.main is not None else None
    return {
        "fps": pipeline.stats.frames / wall, "cpu_s": cpu, "wall_s": wall, "frames": pipeline.stats.frames,
        "tracks": pipeline.track_events.tracks_announced, "main": main,
        "identity_from_main": pipeline.stats.main_frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip", type=Path, default=SHARED_DATA / "video" / "supervision_walking.mp4")
    parser.add_argument("--sub-width", type=int, default=640)
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    args = parser.parse_args()

    with av.open(str(args.clip)) as container:
        video = container.streams.video[0]
        width, height, fps = video.codec_context.width, video.codec_context.height, float(video.average_rate)
    sub_size = (args.sub_width, round(height * args.sub_width / width / 2) * 2)
    with tempfile.TemporaryDirectory(prefix="camd-substream-") as folder:
        gop = max(1, round(fps))
        main_clip = transcode(args.clip, Path(folder) / "main.mp4", gop=gop)
        sub_clip = transcode(args.clip, Path(folder) / "sub.mp4", gop=gop, size=sub_size)
        decode_main, decode_sub = decode_only(str(main_clip)), decode_only(str(sub_clip))
        print(f"decode-only: main {width}x{height} {decode_main['fps']:.0f} frames/s, "
              f"sub {sub_size[0]}x{sub_size[1]} {decode_sub['fps']:.0f} frames/s")
        base = Config(models_dir=args.models_dir, mqtt=MqttConfig(enabled=False),
                      cameras={"cam": CameraConfig(url=str(main_clip))})
        models = Extractors.load(base)
        alone = run(base, models)
        split_camera = CameraConfig(url=str(main_clip), detect_url=str(sub_clip))
        both = base.model_copy(update={"cameras": {"cam": split_camera}})
        split = run(both, models)
    for name, result in (("main stream only", alone), ("substream + main crops", split)):
        line = (f"{name}: {result['frames']} frames, {result['fps']:.1f} frames/s, "
                f"CPU {result['cpu_s']:.1f} s (wall {result['wall_s']:.1f} s), {result['tracks']} tracks")
        main_stats = result["main"]
        if main_stats is not None:
            line += (f"; main stream: {main_stats.packets} packets read, {main_stats.decoded} decoded, "
                     f"{main_stats.converted} converted, {result['identity_from_main']} identity frames")
        print(line)


if __name__ == "__main__":
    main()
