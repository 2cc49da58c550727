"""Camera sources on real H.264: files, a real RTSP server, dead and damaged streams."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from camd.config.schema import CameraConfig
from camd.sources import Backoff, CameraSource, CameraStatus, FrameSampler, resolve_target
from camd.types import Frame
from tests.support.data import shared_data
from tests.support.media import (
    WalkerClip,
    corrupted_copy,
    make_clip,
    make_resolution_change_clip,
    read_index,
    truncated_copy,
)
from tests.support.rtsp import RtspServer, free_port

ServerFactory = Callable[..., RtspServer]
WAIT_S = 20.0  # upper bound for things that should happen in a second or two; only hit on failure
PROMPT_S = 5.0  # "stop ends it promptly": the backoff or the blocked open below would take 30-60 s


def camera(url: str | Path, **settings: object) -> CameraConfig:
    return CameraConfig.model_validate({"url": str(url), **settings})


class Recorder:
    """Collects on_status snapshots and lets a test wait for one that matches."""

    def __init__(self) -> None:
        self.statuses: list[CameraStatus] = []
        self._changed = threading.Condition()

    def __call__(self, status: CameraStatus) -> None:
        with self._changed:
            self.statuses.append(status)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[CameraStatus]], bool], timeout: float = WAIT_S) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.statuses), timeout=timeout)

    def states(self) -> list[str]:
        return [s.state for s in self.statuses]


def run_in_thread(source: CameraSource) -> tuple[threading.Thread, list[Frame]]:
    frames: list[Frame] = []
    thread = threading.Thread(target=lambda: frames.extend(source.frames()), daemon=True)
    thread.start()
    return thread, frames


# --- pure logic: sampling grid and backoff --------------------------------------------------


def test_sampler_keeps_every_sixth_frame_of_30fps_at_5fps() -> None:
    sampler = FrameSampler(5.0)
    kept = [i for i in range(90) if sampler.take(i / 30.0)]
    assert kept == list(range(0, 90, 6))


def test_sampler_restarts_its_grid_after_a_gap_instead_of_bursting() -> None:
    sampler = FrameSampler(5.0)
    times = [0.0, 0.1, 0.2, 5.0, 5.1, 5.2, 5.3, 5.4]
    assert [t for t in times if sampler.take(t)] == [0.0, 0.2, 5.0, 5.2, 5.4]


def test_backoff_grows_to_the_cap_and_resets_after_a_stable_stretch() -> None:
    now = [0.0]
    backoff = Backoff(1.0, 8.0, jitter=0.2, stable_after_s=30.0, rng=random.Random(3), clock=lambda: now[0])
    delays = [backoff.next_delay() for _ in range(6)]
    assert all(b > a for a, b in pairwise(delays[:4]))
    assert all(0.8 <= d <= 8.0 for d in delays) and delays[-1] >= 8.0 * 0.8
    backoff.connected()
    now[0] = 10.0  # dropped again after 10 s: still flapping, keep backing off
    assert backoff.next_delay() >= 6.4
    backoff.connected()
    now[0] = 50.0  # up for 40 s: the next failure is retried quickly again
    assert backoff.next_delay() <= 1.0


def test_backoff_rejects_inverted_limits() -> None:
    with pytest.raises(ValueError, match="initial_s <= max_s"):
        Backoff(5.0, 1.0)


def test_targets_tell_files_from_live_streams(tmp_path: Path) -> None:
    assert resolve_target(str(tmp_path / "a.mp4")).live is False
    file_url = resolve_target(f"file://{tmp_path}/my%20clip.mp4")
    assert (file_url.live, file_url.location) == (False, f"{tmp_path}/my clip.mp4")
    rtsp = resolve_target("rtsp://admin:hunter2@10.0.0.5:554/s1")
    assert rtsp.live and rtsp.rtsp and "hunter2" not in rtsp.shown


# --- files ----------------------------------------------------------------------------------


def test_file_is_sampled_at_detect_fps_by_pts(numbered_clip: Path) -> None:
    recorder = Recorder()
    source = CameraSource("door", camera(numbered_clip, detect_fps=5), threading.Event(), recorder)
    frames = list(source.frames())
    # 40 frames at 10 fps sampled at 5 fps: exactly every other frame, starting with the first.
    assert [read_index(f.image) for f in frames] == list(range(0, 40, 2))
    assert [f.index for f in frames] == list(range(20))
    assert all(f.camera == "door" and f.image.shape == (120, 160, 3) for f in frames)
    gaps = [b.timestamp - a.timestamp for a, b in pairwise(frames)]
    assert gaps == pytest.approx([0.2] * 19, abs=1e-3)  # file clock: media time, not decode speed
    assert [f.pts_seconds for f in frames[:3]] == pytest.approx([0.0, 0.2, 0.4])
    assert recorder.states() == ["online", "ended"]
    assert source.status.frames == 20 and source.status.state == "ended"


def test_file_url_and_detect_fps_above_the_file_rate(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "my clip.mkv", frames=12, fps=10.0)
    frames = list(CameraSource("c", camera(f"file://{clip}".replace(" ", "%20"), detect_fps=30),
                               threading.Event()).frames())
    assert [read_index(f.image) for f in frames] == list(range(12))  # never more frames than exist


@pytest.mark.shared_data
def test_vtest_avi_at_5fps() -> None:
    clip = shared_data("video/vtest.avi")
    frames = list(CameraSource("campus", camera(clip, detect_fps=5), threading.Event()).frames())
    # 795 frames at 10 fps over 79.5 s, every other one kept.
    assert len(frames) == 398
    assert all(b.timestamp > a.timestamp for a, b in pairwise(frames))
    assert {f.image.shape for f in frames} == {(360, 480, 3)}


def test_loop_replays_the_file_with_a_continuing_clock(numbered_clip: Path) -> None:
    stop = threading.Event()
    source = CameraSource("c", camera(numbered_clip, detect_fps=5, loop=True), stop)
    frames: list[Frame] = []
    for frame in source.frames():
        frames.append(frame)
        if len(frames) == 50:
            stop.set()
    codes = [read_index(f.image) for f in frames]
    assert codes[:20] == list(range(0, 40, 2)) and codes[20:40] == list(range(0, 40, 2))
    assert all(b.timestamp > a.timestamp for a, b in pairwise(frames))
    assert source.status.state == "stopped" and source.status.reconnects == 0


def test_realtime_file_is_paced_at_its_native_rate(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "short.mp4", frames=12, fps=10.0)
    started = time.monotonic()
    frames = list(CameraSource("c", camera(clip, detect_fps=10, realtime=True), threading.Event()).frames())
    elapsed = time.monotonic() - started
    assert len(frames) == 12
    assert elapsed >= 1.0  # 12 frames at 10 fps span 1.1 s; unpaced they decode in milliseconds


def test_resolution_change_mid_stream(tmp_path: Path) -> None:
    clip = make_resolution_change_clip(tmp_path / "switch.ts", [(160, 120), (320, 240)], frames_each=10)
    frames = list(CameraSource("c", camera(clip, detect_fps=10), threading.Event()).frames())
    assert [read_index(f.image) for f in frames] == list(range(20))
    assert [f.image.shape[:2] for f in frames] == [(120, 160)] * 10 + [(240, 320)] * 10


def test_truncated_stream_file_plays_what_is_left(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "full.ts", frames=100, fps=10.0, gop=5)
    cut = truncated_copy(clip, tmp_path / "cut.ts", keep=0.6)
    source = CameraSource("c", camera(cut, detect_fps=10), threading.Event())
    codes = [read_index(f.image) for f in source.frames()]
    assert 30 < len(codes) < 100
    assert codes[:-1] == list(range(len(codes) - 1))  # the last, cut-off frame is concealed garbage
    assert source.status.state == "ended"


def test_truncated_mp4_is_retried_a_few_times_then_given_up(numbered_clip: Path, tmp_path: Path) -> None:
    # libx264 MP4s keep their index (moov) at the end: cut off, the file cannot be opened at all.
    cut = truncated_copy(numbered_clip, tmp_path / "cut.mp4", keep=0.6)
    recorder = Recorder()
    source = CameraSource("c", camera(cut, reconnect_initial_s=0.01), threading.Event(), recorder)
    assert list(source.frames()) == []
    assert recorder.states() == ["reconnecting", "reconnecting", "ended"]
    assert "Invalid data" in (source.status.last_error or "") and source.status.state == "ended"


@pytest.mark.parametrize("container", ["mp4", "ts"])
def test_corrupted_file_does_not_crash(tmp_path: Path, container: str) -> None:
    clip = make_clip(tmp_path / f"clean.{container}", frames=100, fps=10.0, gop=5)
    damaged = corrupted_copy(clip, tmp_path / f"damaged.{container}", fraction=0.01)
    source = CameraSource("c", camera(damaged, detect_fps=10), threading.Event())
    codes = [read_index(f.image) for f in source.frames()]
    assert codes[:15] == list(range(15)), "the undamaged start of the file should decode intact"
    assert len(codes) > 50  # decoding resumes after the damaged part
    assert source.status.state == "ended"


def test_missing_file_is_retried_until_stopped(tmp_path: Path) -> None:
    recorder = Recorder()
    stop = threading.Event()
    source = CameraSource("c", camera(tmp_path / "later.mp4", reconnect_initial_s=30), stop, recorder)
    thread, frames = run_in_thread(source)
    assert recorder.wait_for(lambda s: len(s) >= 1)
    assert recorder.statuses[0].state == "reconnecting"
    assert "later.mp4" in (recorder.statuses[0].last_error or "")
    stop.set()
    thread.join(PROMPT_S)
    assert not thread.is_alive() and frames == []
    assert source.status.state == "stopped"


def test_frames_can_be_iterated_only_once(numbered_clip: Path) -> None:
    source = CameraSource("c", camera(numbered_clip), threading.Event())
    list(source.frames())
    with pytest.raises(RuntimeError, match="only once"):
        next(source.frames())


# --- dead and stalled cameras ---------------------------------------------------------------


def test_dead_url_backs_off_with_growing_delays_and_never_logs_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="camd")
    url = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/stream1"  # nothing listens there
    recorder = Recorder()
    stop = threading.Event()
    source = CameraSource("gate", camera(url, reconnect_initial_s=0.05, reconnect_max_s=0.4), stop, recorder)
    thread, frames = run_in_thread(source)
    assert recorder.wait_for(lambda s: len(s) >= 6)
    stop.set()
    thread.join(PROMPT_S)
    assert not thread.is_alive() and frames == []
    retries = [s for s in recorder.statuses if s.state == "reconnecting"]
    delays = [s.retry_delay_s or 0.0 for s in retries]
    # 0.05, 0.1, 0.2, 0.4 less up to 20% jitter: each longer than the last until the 0.4 s cap.
    assert all(b > a for a, b in pairwise(delays[:4])), delays
    assert max(delays) <= 0.4
    assert [s.reconnects for s in retries[:6]] == [1, 2, 3, 4, 5, 6]
    assert "Connection refused" in (retries[-1].last_error or "")
    assert "rtsp://admin:***@127.0.0.1" in (retries[-1].last_error or "")
    assert "hunter2" not in caplog.text and all("hunter2" not in str(s.to_dict()) for s in recorder.statuses)
    # Logged once per state change, not once per retry (camd.sources only: a thread an earlier test
    # left behind may log meanwhile).
    warnings = [r for r in caplog.records
                if r.levelno == logging.WARNING and r.name.startswith("camd.sources")]
    assert len(warnings) == 1 and "admin:***@" in warnings[0].getMessage()
    assert source.status.state == "stopped"


def test_stop_interrupts_a_long_backoff_sleep() -> None:
    recorder = Recorder()
    stop = threading.Event()
    url = f"rtsp://127.0.0.1:{free_port()}/x"
    source = CameraSource("c", camera(url, reconnect_initial_s=60, reconnect_max_s=60), stop, recorder)
    thread, _ = run_in_thread(source)
    assert recorder.wait_for(lambda s: any(x.state == "reconnecting" for x in s))
    stop.set()
    thread.join(PROMPT_S)  # the pending retry is ~1 minute away
    assert not thread.is_alive()


@pytest.fixture
def silent_server() -> tuple[int, threading.Event]:
    """A TCP port that accepts connections and never says a word (a hung camera)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        held.append(connection)
        accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], accepted
    listener.close()
    for connection in held:
        connection.close()


def test_stop_interrupts_a_blocked_open(silent_server: tuple[int, threading.Event]) -> None:
    port, accepted = silent_server
    stop = threading.Event()
    source = CameraSource("c", camera(f"rtsp://127.0.0.1:{port}/x", open_timeout_s=60), stop)
    thread, _ = run_in_thread(source)
    assert accepted.wait(WAIT_S)  # PyAV is now blocked waiting for the RTSP reply
    stop.set()
    thread.join(PROMPT_S)
    assert not thread.is_alive()
    assert source.status.state == "stopped"


def test_hung_camera_times_out_and_is_retried(silent_server: tuple[int, threading.Event]) -> None:
    port, _ = silent_server
    recorder = Recorder()
    stop = threading.Event()
    source = CameraSource("c", camera(f"rtsp://127.0.0.1:{port}/x", open_timeout_s=0.5,
                                      reconnect_initial_s=0.05), stop, recorder)
    thread, _ = run_in_thread(source)
    assert recorder.wait_for(lambda s: any(x.state == "reconnecting" for x in s))
    stop.set()
    thread.join(PROMPT_S)
    assert "cannot open" in (recorder.statuses[0].last_error or "")


# --- a real RTSP exchange -------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_stream_feeds_the_source(
    rtsp_server: ServerFactory, stream_clip: Path, transport: str
) -> None:
    server = rtsp_server(stream_clip)
    stop = threading.Event()
    recorder = Recorder()
    source = CameraSource("porch", camera(server.url, detect_fps=5, rtsp_transport=transport), stop, recorder)
    frames: list[Frame] = []
    for frame in source.frames():
        frames.append(frame)
        if len(frames) == 8:
            stop.set()
    codes = [read_index(f.image) for f in frames]
    assert codes == sorted(set(codes)), codes  # frames of the clip, in order, none twice
    assert {f.image.shape for f in frames} == {(120, 160, 3)}
    assert all(b.timestamp > a.timestamp for a, b in pairwise(frames))
    assert recorder.states()[0] == "online" and source.status.state == "stopped"


def test_rtsp_server_killed_and_restarted(rtsp_server: ServerFactory, stream_clip: Path) -> None:
    server = rtsp_server(stream_clip)
    stop = threading.Event()
    recorder = Recorder()
    source = CameraSource("yard", camera(server.url, detect_fps=5, reconnect_initial_s=0.1,
                                         reconnect_max_s=0.5), stop, recorder)
    dropped = threading.Event()

    def restart_when_dropped() -> None:
        if recorder.wait_for(lambda s: any(x.state == "reconnecting" for x in s)):
            dropped.set()
            server.start()

    threading.Thread(target=restart_when_dropped, daemon=True).start()
    watchdog = threading.Timer(60, stop.set)  # a broken reconnect fails the test instead of hanging it
    watchdog.start()
    before: list[Frame] = []
    after: list[Frame] = []
    try:
        for frame in source.frames():
            if not dropped.is_set():
                before.append(frame)
                if len(before) == 3:
                    server.kill()
            elif recorder.wait_for(lambda s: s[-1].state == "online", timeout=0):
                after.append(frame)  # delivered by the new session
                if len(after) == 3:
                    stop.set()
    finally:
        watchdog.cancel()
    assert len(before) >= 3 and len(after) == 3, (len(before), len(after), recorder.states())
    assert recorder.states()[:2] == ["online", "reconnecting"] and "online" in recorder.states()[2:]
    # The new session plays the clip from its start again.
    assert read_index(after[0].image) <= read_index(before[-1].image)
    assert all(b.timestamp > a.timestamp for a, b in pairwise(before + after))
    assert source.status.reconnects >= 1


# --- the media fixtures other tests build on ------------------------------------------------


def test_walkers_clip_matches_its_ground_truth(walkers_clip: WalkerClip) -> None:
    scene = walkers_clip.scene
    frames = list(CameraSource("c", camera(walkers_clip.path, detect_fps=10), threading.Event()).frames())
    assert len(frames) == scene.frames
    walkers = {w.name: w for w in scene.walkers}
    for frame in frames[:: scene.frames // 6]:
        for name, (x1, y1, x2, y2) in scene.boxes(frame.index).items():
            inside = frame.image[int(y1) + 4 : int(y2) - 4, int(x1) + 4 : int(x2) - 4].reshape(-1, 3)
            assert np.abs(inside.mean(axis=0) - walkers[name].color).max() < 12, (name, frame.index)
    first, last = scene.boxes(0)["red"], scene.boxes(scene.frames - 1)["red"]
    assert last[0] - first[0] == pytest.approx(240, abs=1)  # left to right along its lane
