"""Logging set-up and the start-up errors the daemon commands turn into a message and an exit code."""

from __future__ import annotations

import logging
import os
import sys

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    # Under systemd the journal stamps each line itself.
    fmt = LOG_FORMAT.removeprefix("%(asctime)s ") if os.environ.get("JOURNAL_STREAM") else LOG_FORMAT
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)
    # third-party chatter that says nothing a camd user can act on
    logging.getLogger("httpx").setLevel(logging.WARNING)


def startup_errors() -> tuple[type[Exception], ...]:
    """Errors that stop camd before it runs, each with a message that says what to do."""
    from camd.assets import AssetError
    from camd.identity.memory import MemoryLockedError
    from camd.publish.outbox import OutboxError
    from camd.vision.detector import DetectorError

    return (AssetError, MemoryLockedError, OutboxError, DetectorError)
