"""Logging a failure that repeats (a full disk, a store that refuses writes) once, not per attempt.

The first failure is logged with its reason; repeats are counted silently; the first success after
them logs that the outage is over and how many attempts failed meanwhile.
"""

from __future__ import annotations

import logging
import threading


class OutageLog:
    """One recurring failure of one thing (`what`), e.g. "crops: writing to /var/lib/camd/crops"."""

    def __init__(self, logger: logging.Logger, what: str, consequence: str) -> None:
        """consequence: what camd does meanwhile, said once ("sightings are stored without crops")."""
        self._log = logger
        self.what = what
        self.consequence = consequence
        self._lock = threading.Lock()
        self.failures = 0  # in the current outage
        self.outages = 0  # since start

    @property
    def down(self) -> bool:
        return self.failures > 0

    def failed(self, reason: BaseException | str) -> None:
        with self._lock:
            self.failures += 1
            first = self.failures == 1
            if first:
                self.outages += 1
        if first:
            self._log.error("%s failed: %s; %s. Logged once until it works again.", self.what,
                            _describe(reason), self.consequence)

    def ok(self) -> None:
        with self._lock:
            failures, self.failures = self.failures, 0
        if failures:
            self._log.warning("%s works again (%d attempt(s) failed meanwhile)", self.what, failures)


def _describe(reason: BaseException | str) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror + (f" ({reason.filename})" if reason.filename else "")
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return reason
