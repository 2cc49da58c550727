"""OpenVINO, imported with its usage telemetry declined.

`import openvino` imports OpenVINO's model converter, which reports the import (and each conversion) to
Google Analytics through the openvino-telemetry package unless the user has run `opt_in_out --opt_out`.
On Linux every report forks a process from whatever threads are running; a child forked while another
thread holds a lock never runs, and a test run hung at exit on three of them. camd runs on the user's
hub and sends nothing anywhere: before OpenVINO is imported, the telemetry's consent check answers
"declined" for this process, so nothing is sent, nothing forks, and no consent or client-id file is
written in the user's home.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def openvino() -> ModuleType:
    """The `openvino` module, imported (once) with telemetry declined. Raises ImportError without it."""
    decline_telemetry()
    import openvino as ov

    return ov


def decline_telemetry() -> None:
    try:
        from openvino_telemetry import Telemetry
        from openvino_telemetry.utils import opt_in_checker
    except ImportError:  # not installed: nothing would be sent
        return
    checker: Any = opt_in_checker.OptInChecker
    if not getattr(checker.check, "camd_declined", False):

        def declined(self: Any, *args: Any, **kwargs: Any) -> Any:
            return opt_in_checker.ConsentCheckResult.DECLINED

        declined.camd_declined = True  # type: ignore[attr-defined]
        checker.check = declined
    existing = getattr(Telemetry, "_SingletonMetaClass__single_instance", None)
    if existing is not None:  # made before camd was asked (another import of openvino or nncf)
        existing.consent = False
