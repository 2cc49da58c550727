"""A real RTSP server for tests: GStreamer's gst-rtsp-server serving an H.264 clip.

camd is an RTSP *client*, as it is with a real camera. FFmpeg (and so PyAV) has no RTSP server
that clients can pull from (its `rtsp_flags=listen` accepts a publisher instead), so the server
is GStreamer's, run as a child process of the system Python 3 (`gi` comes from Debian and is not
in the venv). Each client session plays the clip from the start, in real time, and the stream
ends at the end of the clip (a live client sees that as a drop and reconnects).

Needs (Debian 12):
    apt-get install -y --no-install-recommends gir1.2-gst-rtsp-server-1.0 python3-gi \
        gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
Tests that need it skip with that line when it is missing; nothing is installed from here.
"""

from __future__ import annotations

import functools
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SYSTEM_PYTHON = os.environ.get("CAMD_TEST_GST_PYTHON", "/usr/bin/python3")
APT_PACKAGES = (
    "gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad"
)
INSTALL_HINT = f"apt-get install -y --no-install-recommends {APT_PACKAGES}"
START_TIMEOUT_S = 15.0

# Runs under the system python3. argv: clip path, port, mount point. Prints READY when listening.
_SERVER_SCRIPT = r"""
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

clip, port, mount = sys.argv[1], sys.argv[2], sys.argv[3]
Gst.init(None)
demux = "matroskademux" if clip.endswith((".mkv", ".webm")) else "qtdemux"
factory = GstRtspServer.RTSPMediaFactory()
# config-interval=-1: SPS/PPS before every keyframe, so a client joining mid-stream can decode.
factory.set_launch(
    f'( filesrc location="{clip}" ! {demux} ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )'
)
factory.set_shared(False)  # each client session plays the clip from its start
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
server.get_mount_points().add_factory(mount, factory)
if server.attach(None) == 0:
    print("FAILED to listen on port", port, flush=True)
    sys.exit(2)
print("READY", flush=True)
GLib.MainLoop().run()
"""

_PROBE_SCRIPT = r"""
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("filesrc", "qtdemux", "h264parse", "rtph264pay") if Gst.ElementFactory.find(e) is None]
print("missing elements: " + " ".join(missing) if missing else "OK")
"""


@functools.cache
def gstreamer_rtsp_missing() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"no system Python at {SYSTEM_PYTHON}"
    try:
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-c", _PROBE_SCRIPT], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {SYSTEM_PYTHON}: {exc}"
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"GStreamer RTSP server not importable ({last})"
    if probe.stdout.strip() != "OK":
        return probe.stdout.strip()
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RtspServer:
    """A GStreamer RTSP server process serving one clip at `url`; kill and start it at will."""

    def __init__(self, clip: Path, port: int | None = None, mount: str = "/cam") -> None:
        self.clip = Path(clip)
        self.port = port or free_port()
        self.mount = mount
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def url_with_credentials(self, user: str, password: str) -> str:
        """The same stream with credentials in the URL (the server does not check them)."""
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RtspServer:
        """Start (or restart, on the same port) and wait until it accepts connections."""
        if self.running:
            return self
        self._process = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", _SERVER_SCRIPT, str(self.clip), str(self.port), self.mount],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], START_TIMEOUT_S)
        line = self._process.stdout.readline().strip() if ready else "(nothing)"  # one line, then serves
        if line != "READY":
            stderr = self._kill_and_collect()
            raise RuntimeError(f"RTSP server did not start: {line!r} {stderr}")
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self._kill_and_collect()
        raise RuntimeError(
            f"RTSP server on port {self.port} did not accept connections in {START_TIMEOUT_S} s"
        )

    def kill(self) -> None:
        """SIGKILL, as when the camera loses power: no RTSP TEARDOWN, connections just break."""
        if self._process is not None:
            self._kill_and_collect()

    def _kill_and_collect(self) -> str:
        process, self._process = self._process, None
        if process is None:
            return ""
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        try:
            _, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            return ""
        return stderr or ""


@pytest.fixture
def rtsp_server() -> Iterator[Callable[..., RtspServer]]:
    """Factory: `rtsp_server(clip, mount="/cam")` starts a server and returns it (killed at teardown).
    Skips with the apt-get line when GStreamer's RTSP server is not installed."""
    missing = gstreamer_rtsp_missing()
    if missing:
        pytest.skip(f"needs GStreamer's RTSP server: {missing}. Install with: {INSTALL_HINT}")
    servers: list[RtspServer] = []

    def serve(clip: Path, mount: str = "/cam", port: int | None = None) -> RtspServer:
        server = RtspServer(clip, port=port, mount=mount).start()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.kill()
