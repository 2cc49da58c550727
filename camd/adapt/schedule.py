"""The nightly `camd adapt` (config `adapt.nightly_at`): the daemon starts it as a child process at that
local time, niced with a thread cap like the command, and logs its outcome. Torch is imported in the child
only (a fresh interpreter); the daemon never imports it.

A network that passed the guardrail is put in use for the daemon's next start (the memory is re-embedded
then): the running daemon keeps its network until it restarts.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from camd.config.schema import Config

log = logging.getLogger(__name__)


def seconds_until(at: str, now: dt.datetime) -> float:
    """Seconds from `now` (local) to the next `HH:MM`."""
    hour, minute = (int(part) for part in at.split(":"))
    target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= now:
        target += dt.timedelta(days=1)
    return (target - now).total_seconds()


def _child(settings: dict[str, Any]) -> None:
    from camd.adapt.run import adapt
    from camd.config.schema import Config

    logging.basicConfig(level=logging.INFO, format="camd adapt (nightly): %(message)s")
    try:
        outcome = adapt(Config.model_validate(settings))
    except Exception as exc:  # said in the log; the next night tries again
        logging.getLogger(__name__).warning("camd adapt (nightly) did not run: %s", exc)
        return
    logging.getLogger(__name__).info("camd adapt (nightly): %s%s", outcome.decision.reason,
                                     "; in use from the daemon's next start" if outcome.adapted else "")


class NightlyAdapt:
    """A daemon thread that waits for adapt.nightly_at, runs one adaptation in a child process, repeats."""

    def __init__(self, config: Config, stop_event: threading.Event) -> None:
        self.config = config
        self.stop_event = stop_event
        self.thread = threading.Thread(target=self._loop, name="nightly-adapt", daemon=True)
        self.child: multiprocessing.process.BaseProcess | None = None

    def start(self) -> None:
        log.info("camd adapt runs every night at %s (adapt.nightly_at)", self.config.adapt.nightly_at)
        self.thread.start()

    def stop(self) -> None:
        child = self.child
        if child is not None and child.is_alive():
            child.terminate()  # a killed training leaves the network in use as it was
            child.join(5)

    def _loop(self) -> None:
        at = str(self.config.adapt.nightly_at)
        while not self.stop_event.wait(seconds_until(at, dt.datetime.now())):
            self.run_once()

    def run_once(self) -> int | None:
        """One adaptation in a fresh interpreter; its exit code."""
        context = multiprocessing.get_context("spawn")
        self.child = context.Process(target=_child, args=(self.config.model_dump(mode="json"),),
                                     name="camd-adapt", daemon=True)  # fmt: skip
        self.child.start()
        limit = self.config.adapt.max_minutes * 60.0 + 600.0  # training bound, plus loading and checks
        self.child.join(limit)
        if self.child.is_alive():
            log.warning("camd adapt (nightly) ran past %.0f s; stopped", limit)
            self.child.terminate()
            self.child.join(5)
        return self.child.exitcode
