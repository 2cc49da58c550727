"""The systemd notify protocol (sd_notify) without libsystemd: datagrams on $NOTIFY_SOCKET.

systemd sets NOTIFY_SOCKET for a `Type=notify` unit and WATCHDOG_USEC when `WatchdogSec=` is set.
Outside systemd both are absent and every call here is a no-op, so the daemon runs the same
from a terminal.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _socket_address(raw: str) -> str | bytes:
    # '@name' is an abstract-namespace socket: a leading NUL byte on Linux.
    return b"\0" + raw[1:].encode() if raw.startswith("@") else raw


SEND_TIMEOUT_S = 0.5


class SystemdNotifier:
    """Sends notify messages to the service manager. Thread-safe; never raises for a send error
    (a lost notification must not stop the cameras), it logs it once instead."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = _socket_address(raw) if raw else None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._send_failed = False
        self.watchdog_usec = _watchdog_usec(env)

    @property
    def enabled(self) -> bool:
        """True under a service manager that listens for notifications."""
        return self._address is not None

    @property
    def watchdog_enabled(self) -> bool:
        return self.enabled and self.watchdog_usec is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half the timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec else None

    def notify(self, *fields: str) -> bool:
        """Send `KEY=VALUE` fields in one datagram. False when not under systemd or the send failed."""
        if self._address is None:
            return False
        message = "\n".join(fields).encode()
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    # A manager that does not read (its queue holds 10 datagrams by default) must not
                    # block the watchdog thread: it would stop noticing stalls.
                    self._socket.settimeout(SEND_TIMEOUT_S)
                self._socket.sendto(message, self._address)
            except OSError as exc:
                if not self._send_failed:  # once: a gone socket would otherwise log every few seconds
                    log.warning("systemd notify to %s failed: %s", self._shown_address, exc)
                    self._send_failed = True
                return False
        self._send_failed = False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        # One line: systemctl status shows it as-is.
        return self.notify("STATUS=" + " ".join(text.split()))

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    @property
    def _shown_address(self) -> str:
        address = self._address
        return "@" + address[1:].decode() if isinstance(address, bytes) else str(address)


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC when it is meant for this process (WATCHDOG_PID absent or ours)."""
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None  # inherited from a parent that systemd watches, not us
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a number of microseconds", raw)
        return None
    return usec if usec > 0 else None
