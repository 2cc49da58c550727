"""Feed the systemd watchdog only while the pipeline makes progress.

A process that is alive but stuck (a hung detector call, a decoder that never returns) must be
restarted as surely as one that died. So the watchdog is fed when frames are being processed, or
when there is nothing to process (no camera online: the sources are reconnecting on their own
backoff). When cameras are online and no frame has been processed for `stall_s`, feeding stops
and systemd restarts camd after `WatchdogSec`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from camd.service.systemd import SystemdNotifier

log = logging.getLogger(__name__)

# Without a systemd watchdog the checks still run (the API reports a stall) at this pace.
UNWATCHED_INTERVAL_S = 5.0
STATUS_EVERY_S = 10.0  # STATUS= line for `systemctl status`


@dataclass(frozen=True)
class Progress:
    frames: int  # frames processed so far, all cameras together
    online: frozenset[str]  # cameras whose stream is up right now


class PipelineWatchdog:
    """Checks `probe()` every `interval_s` and sends WATCHDOG=1 unless the pipeline has stalled.

    `describe()` (optional) gives a one-line status sent as STATUS= every STATUS_EVERY_S.
    """

    def __init__(
        self,
        notifier: SystemdNotifier,
        probe: Callable[[], Progress],
        stall_s: float,
        interval_s: float | None = None,
        describe: Callable[[], str] | None = None,
    ) -> None:
        self.notifier = notifier
        self.probe = probe
        self.stall_s = stall_s
        self.interval_s = interval_s or notifier.watchdog_interval_s or UNWATCHED_INTERVAL_S
        self.describe = describe
        self.feeds = 0  # WATCHDOG=1 messages sent
        self._frames = -1
        self._online: frozenset[str] = frozenset()
        self._progress_at = time.monotonic()
        self._stalled = False
        self._status_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stalled_event = threading.Event()  # set while stalled (tests and the API wait on it)

    @property
    def stalled(self) -> bool:
        return self._stalled

    def seconds_without_progress(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self._progress_at

    def check(self, now: float | None = None) -> bool:
        """One tick: look at the pipeline, feed the watchdog if it is healthy. True when fed."""
        now = time.monotonic() if now is None else now
        progress = self.probe()
        # A camera that just came online gets a full stall_s to deliver its first frame.
        if progress.frames != self._frames or not progress.online <= self._online:
            self._progress_at = now
        self._frames, self._online = progress.frames, progress.online
        idle = now - self._progress_at
        stalled = bool(progress.online) and idle >= self.stall_s
        if stalled and not self._stalled:
            cameras = ", ".join(sorted(progress.online))
            log.error(
                "watchdog: no frame processed for %.0f s while camera(s) %s online; "
                "no longer feeding the systemd watchdog (systemd restarts camd when WatchdogSec runs out)",
                idle, cameras,
            )
            self.notifier.status(f"stalled: no frame processed for {idle:.0f} s ({cameras} online)")
            self.stalled_event.set()
        elif self._stalled and not stalled:
            log.warning("watchdog: frames are processed again; feeding the systemd watchdog again")
            self.stalled_event.clear()
        self._stalled = stalled
        if not stalled and self.describe is not None and now - self._status_at >= STATUS_EVERY_S:
            self._status_at = now
            self.notifier.status(self.describe())
        if stalled or not self.notifier.watchdog_enabled:
            return False
        if self.notifier.watchdog():
            self.feeds += 1
        return True

    # -- thread ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._progress_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="camd-watchdog", daemon=True)
        self._thread.start()
        if self.notifier.watchdog_enabled:
            log.info("watchdog: feeding systemd every %.1f s while frames flow (stall after %.0f s)",
                     self.interval_s, self.stall_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 1.0)
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception:  # a probe bug must not end the watchdog thread silently
                log.exception("watchdog: check failed")
            if self._stop.wait(self.interval_s):
                return
