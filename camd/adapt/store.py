"""Where adapted body networks live, which one is in use, and the ones before it.

An adapted network is this installation's own (learned from its own crops: biometric data), so it lives
in the state folder, not beside the shared models: `<state_dir>/adapted/<base space>/<id>/` holds
`model.onnx` (the same run-time format as the shipped network) and `record.json` (what it was trained
on, the guardrail's figures before and after, and the thresholds re-derived for it); `state.json` says
which one is current and which were current before (newest last), for `camd adapt --rollback`.

An adapted network serves the colour half of camd's body vector; the greyscale half keeps the base
network (`record["grey_half"] == "base"`; records made before that say nothing and served both halves).

Each adapted network is a body space of its own (`<base space>` with `_ad<sha8>`, or `_adc<sha8>` when it
serves the colour half only, before `_cg`): vectors of two networks are not comparable, so the memory
keeps one prototype collection per network; switching to an adapted network (or back) re-embeds every
enrolled person's kept crops once (identity/reembed.py), and switching back finds the previous
network's vectors where they were.

No torch here: the daemon reads this module at start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camd.identity.body_compare import BodyCalibration
from camd.private import private_dir, write_private

if TYPE_CHECKING:
    from camd.identity.body_model import BodyModel

log = logging.getLogger(__name__)

STATE = "state.json"
RECORD = "record.json"
MODEL = "model.onnx"
KEEP = 3  # adapted networks kept on disk (current + the ones rollback can go back to)


class AdaptStoreError(RuntimeError):
    """The adapted-network folder cannot be used as asked; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Adapted:
    """One adapted network on disk."""

    id: str
    folder: Path
    record: dict[str, Any]

    @property
    def onnx(self) -> Path:
        return self.folder / MODEL

    @property
    def colour_only(self) -> bool:
        """It serves the colour half; the base network embeds the greyscale half."""
        return self.record.get("grey_half") == "base"

    @property
    def tag(self) -> str:
        return f"ad{'c' if self.colour_only else ''}{str(self.record.get('onnx_sha256', self.id))[:8]}"


def adapted_space(base_space: str, adapted: Adapted) -> str:
    """The adapted network's body space: the base's, tagged (before `_cg`, which says halves)."""
    stem, cg = (base_space[:-3], "_cg") if base_space.endswith("_cg") else (base_space, "")
    return f"{stem}_{adapted.tag}{cg}"


class AdaptedStore:
    """The adapted networks of one base network (one base body space)."""

    def __init__(self, root: Path, base_space: str) -> None:
        self.root = Path(root)
        self.base_space = base_space
        self.folder = self.root / base_space

    # -- reading -----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        try:
            value = json.loads((self.folder / STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"current": None, "previous": []}
        if not isinstance(value, dict):
            return {"current": None, "previous": []}
        return {"current": value.get("current"), "previous": list(value.get("previous") or [])}

    def get(self, adapted_id: str) -> Adapted | None:
        folder = self.folder / adapted_id
        try:
            record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not (folder / MODEL).is_file() or not isinstance(record, dict):
            return None
        return Adapted(adapted_id, folder, record)

    def current(self) -> Adapted | None:
        """The network in use, when it is there and whole (a damaged one means: the base network)."""
        current = self.state()["current"]
        return self.get(str(current)) if current else None

    def history(self) -> list[Adapted]:
        """Every adapted network on disk, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [self.get(p.name) for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted((a for a in found if a is not None), key=lambda a: float(a.record.get("created", 0)))

    # -- writing -----------------------------------------------------------------------------------

    def add(self, adapted_id: str, onnx: Path, record: dict[str, Any]) -> Adapted:
        """Keep a new network (not yet in use)."""
        folder = self.folder / adapted_id
        private_dir(self.root)
        private_dir(self.folder)
        private_dir(folder)
        shutil.copyfile(onnx, folder / f".{MODEL}.tmp")
        os.chmod(folder / f".{MODEL}.tmp", 0o600)
        os.replace(folder / f".{MODEL}.tmp", folder / MODEL)
        _write(folder / RECORD, record)
        return Adapted(adapted_id, folder, record)

    def use(self, adapted: Adapted) -> None:
        """Make `adapted` current; the network in use before goes on the rollback list."""
        state = self.state()
        if state["current"] and state["current"] != adapted.id:
            state["previous"].append(state["current"])
        state["current"] = adapted.id
        self._save(state)
        self._prune(state)

    def rollback(self) -> tuple[str | None, str | None]:
        """Back to the network in use before the current one (the base when there was none);
        returns (from, to) ids, None meaning the base network."""
        state = self.state()
        if state["current"] is None:
            raise AdaptStoreError("no adapted network is in use: the base network is (nothing to roll back)")
        was = state["current"]
        previous = [p for p in state["previous"] if self.get(str(p)) is not None]
        state["current"] = previous.pop() if previous else None
        state["previous"] = previous
        self._save(state)
        return was, state["current"]

    def reset(self) -> int:
        """Delete every adapted network of this base (the base network is used again); returns how many."""
        count = sum(1 for p in self.folder.iterdir() if p.is_dir()) if self.folder.is_dir() else 0
        if self.folder.exists():
            shutil.rmtree(self.folder)
        return count

    def _save(self, state: dict[str, Any]) -> None:
        private_dir(self.root)
        private_dir(self.folder)
        _write(self.folder / STATE, state)

    def _prune(self, state: dict[str, Any]) -> None:
        keep = {state["current"], *state["previous"][-(KEEP - 1) :]}
        state["previous"] = [p for p in state["previous"] if p in keep]
        self._save(state)
        current = self.get(str(state["current"])) if state["current"] else None
        newest = float(current.record.get("created", 0)) if current is not None else 0.0
        for adapted in self.history():  # networks kept after the current one are not pruned yet
            if adapted.id not in keep and float(adapted.record.get("created", 0)) < newest:
                with contextlib.suppress(OSError):
                    shutil.rmtree(adapted.folder)


def _write(path: Path, value: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    write_private(temp, json.dumps(value, indent=1, sort_keys=True).encode(), exclusive=True)
    os.replace(temp, path)


def current_model(base: BodyModel, adapted_dir: Path) -> BodyModel:
    """The body model in use: the base OSNet, or the adapted network that replaced it on this install
    (its own body space, label and re-derived thresholds; the base network still embeds the greyscale
    half when the adapted one serves the colour half only). A damaged adapted network is ignored, said
    in the log: the base network is always there to fall back on."""
    store = AdaptedStore(adapted_dir, base.space)
    wanted = store.state()["current"]
    adapted = store.current()
    if adapted is None:
        if wanted:
            log.warning("identity: adapted body network %s is missing or damaged in %s; using %s "
                        "(camd adapt --reset clears it)", wanted, store.folder, base.label)  # fmt: skip
        return base
    created = time.strftime("%Y-%m-%d", time.localtime(float(adapted.record.get("created", 0))))
    calibration = adapted.record.get("calibration")
    return replace(
        base,
        space=adapted_space(base.space, adapted),
        onnx=adapted.onnx,
        grey_onnx=base.onnx if adapted.colour_only else None,
        label=f"{base.label}, adapted to this installation on {created} ({adapted.id})",
        adapted=adapted.id,
        calibration=calibration_from_dict(calibration) if isinstance(calibration, dict) else None,
    )


def calibration_to_dict(calibration: BodyCalibration) -> dict[str, Any]:
    return {
        "name": calibration.name,
        "impostor": {"/".join(k): list(v) for k, v in calibration.impostor.items()},
        "slope": dict(calibration.slope),
        "stranger_margin": dict(calibration.stranger_margin),
        "colour_half": None if calibration.colour_half is None else dict(calibration.colour_half),
        "clothing_colour": dict(calibration.clothing_colour),
        "false_merge_rate": calibration.false_merge_rate,
        "measured_on": calibration.measured_on,
    }


def calibration_from_dict(value: dict[str, Any]) -> BodyCalibration:
    impostor = {tuple(k.split("/")): (float(v[0]), float(v[1])) for k, v in value["impostor"].items()}
    return BodyCalibration(
        name=str(value["name"]),
        impostor=impostor,  # type: ignore[arg-type]
        slope={k: float(v) for k, v in value["slope"].items()},  # type: ignore[misc]
        stranger_margin={k: float(v) for k, v in value["stranger_margin"].items()},  # type: ignore[misc]
        colour_half=None if value.get("colour_half") is None else dict(value["colour_half"]),
        clothing_colour=dict(value["clothing_colour"]),
        measured_on=str(value.get("measured_on", "")),
        # Records written before the stranger-link rule took its merge rate from the dataclass's default.
        **({"false_merge_rate": value["false_merge_rate"]} if "false_merge_rate" in value else {}),
    )
