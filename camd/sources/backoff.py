"""Capped exponential backoff with jitter, for reconnecting to a camera.

A camera that drops every few seconds must not be hammered, and one that was healthy for a
long stretch should be retried quickly after its next failure: the delay grows by `factor`
per failed attempt up to `max_s`, and starts again from `initial_s` once a connection has
stayed up for `stable_after_s`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    """Delays between reconnect attempts.

    jitter spreads retries of several cameras behind one dead NVR: each delay is drawn from
    [(1 - jitter) * d, d]. With factor 2 and jitter below 0.5 every delay is still longer than
    the one before, until the cap.
    """

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        *,
        factor: float = 2.0,
        jitter: float = 0.2,
        stable_after_s: float = 30.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got initial_s={initial_s}, max_s={max_s}")
        if factor < 1.0 or not 0.0 <= jitter < 1.0:
            raise ValueError(f"need factor >= 1 and 0 <= jitter < 1, got factor={factor}, jitter={jitter}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self.stable_after_s = stable_after_s
        self._rng = rng or random.Random()
        self._clock = clock
        self._failures = 0
        self._connected_at: float | None = None

    @property
    def failures(self) -> int:
        """Failed attempts since the last reset."""
        return self._failures

    def connected(self) -> None:
        """The source is delivering again; a long enough stretch of this resets the backoff."""
        self._connected_at = self._clock()

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before the next attempt."""
        if self._connected_at is not None and self._clock() - self._connected_at >= self.stable_after_s:
            self._failures = 0
        self._connected_at = None
        base = min(self.max_s, self.initial_s * self.factor**self._failures)
        self._failures += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self._failures = 0
        self._connected_at = None
