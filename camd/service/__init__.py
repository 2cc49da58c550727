"""camd as a service: systemd notifications, the pipeline watchdog and the control API, started
and stopped around the daemon by `DaemonServices`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from camd.service.systemd import SystemdNotifier
from camd.service.watchdog import PipelineWatchdog, Progress

if TYPE_CHECKING:
    from camd.api.identity import IdentityBackend
    from camd.api.server import ApiServer
    from camd.api.status import DaemonView

__all__ = ["DaemonServices", "PipelineWatchdog", "Progress", "SystemdNotifier", "daemon_progress"]

log = logging.getLogger(__name__)


def daemon_progress(daemon: DaemonView) -> Progress:
    """Frames processed so far and the cameras whose stream is up."""
    pipelines = list(daemon.pipelines.copy().values())  # start() may be adding cameras
    return Progress(
        frames=sum(p.stats.frames for p in pipelines),
        online=frozenset(p.name for p in pipelines if p.source.status.state == "online"),
    )


def describe_progress(daemon: DaemonView) -> str:
    """One line for `systemctl status`."""
    statuses = [p.source.status for p in daemon.pipelines.copy().values()]
    online = sum(s.state == "online" for s in statuses)
    fps = sum(s.fps for s in statuses if s.state == "online")
    return f"{online}/{len(statuses)} camera(s) online, {fps:.1f} frames/s"


class DaemonServices:
    """Around a Daemon: open() before the cameras start (starts the control API; one that cannot
    listen is logged and skipped, the cameras still run), ready() once they run, stopping() when
    shutdown begins, close() once the cameras have stopped. `environ` defaults to os.environ
    (NOTIFY_SOCKET, WATCHDOG_USEC)."""

    def __init__(self, daemon: DaemonView, environ: Mapping[str, str] | None = None) -> None:
        self.daemon = daemon
        self.notifier = SystemdNotifier(environ)
        self.watchdog = PipelineWatchdog(
            self.notifier,
            probe=lambda: daemon_progress(daemon),
            stall_s=daemon.config.service.stall_s,
            describe=lambda: describe_progress(daemon),
        )
        self.api: ApiServer | None = None
        self._control: object | None = None

    def open(self) -> None:
        config = self.daemon.config
        if not config.api.enabled:
            return
        from camd.api import ApiServer, ApiStartError, ControlApi, create_app, ensure_token

        control = ControlApi(self.daemon, ensure_token(config.state_dir), watchdog=self.watchdog)
        self._control = control
        server = ApiServer(create_app(control), config.api, config.state_dir)
        try:
            server.start()
        except ApiStartError as exc:
            # The cameras matter more than the API: run without it rather than not at all.
            log.error("%s; running without the control API", exc)
            return
        self.api = server

    def attach_identity(self, service: IdentityBackend | None) -> None:
        """Serve the people/enroll/... routes from `service` (None: they answer 503)."""
        from camd.api import ControlApi

        if isinstance(self._control, ControlApi):
            self._control.identity = service

    def ready(self) -> None:
        self.watchdog.start()
        self.notifier.ready(describe_progress(self.daemon))

    def stopping(self) -> None:
        self.notifier.stopping("stopping")
        self.watchdog.stop()

    def close(self) -> None:
        if self.api is not None:
            self.api.stop()
            self.api = None
        self.notifier.close()
