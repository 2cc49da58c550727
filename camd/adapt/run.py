"""One adaptation: train on the installation's tracks, export, check before and after, keep or refuse.

`adapt_on` is the whole procedure on given tracks (the command and the benchmark both run it);
`adapt` reads the installation (config, sighting log, crops), runs it niced with a thread cap and a time
bound, and puts a better network in use (camd/adapt/store.py).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camd.adapt.check import (
    MARGIN,
    CheckResult,
    Decision,
    decide,
    derive_calibration,
    embed_tracks,
    impostor_scores,
)
from camd.adapt.check import check as run_check
from camd.adapt.store import Adapted, AdaptedStore, calibration_to_dict
from camd.adapt.tracks import AdaptTrack, load_tracks, split_for_check

if TYPE_CHECKING:
    from camd.config.schema import Config
    from camd.identity.body_compare import BodyCalibration
    from camd.identity.body_model import BodyModel

log = logging.getLogger(__name__)

LAST_RUN = "last-run.json"
MAX_DISTRACTORS = 500  # trained-on tracks whose halves join the self check's gallery (embedding cost)
BASE_SHARE = 0.5  # the base network's share of the adapted weights (train.average_with_base)


@dataclass
class Outcome:
    """What one adaptation did and measured."""

    onnx: Path | None
    decision: Decision
    before: CheckResult
    after: CheckResult | None = None
    train: dict[str, Any] = field(default_factory=dict)
    calibration: BodyCalibration | None = None
    calibration_how: dict[str, str] = field(default_factory=dict)
    tracks: dict[str, int] = field(default_factory=dict)
    adapted: str | None = None  # the id of the network put in use
    grey_half: str = "base"  # which network embeds the greyscale half: "base" or "adapted"

    def as_dict(self) -> dict[str, Any]:
        return {
            "replaced": self.decision.replace, "reason": self.decision.reason, "adapted": self.adapted,
            "check_before": self.before.as_dict(),
            "check_after": None if self.after is None else self.after.as_dict(),
            "train": self.train, "tracks": self.tracks, "thresholds": self.calibration_how,
            "grey_half": self.grey_half,
        }  # fmt: skip


def adapt_on(
    tracks: Sequence[AdaptTrack],
    *,
    base_weights: Path,
    variant: str,
    current_onnx: Path,
    current_calibration: BodyCalibration,
    work: Path,
    grey_onnx: Path | None = None,
    current_grey_onnx: Path | None = None,
    epochs: float = 4.0,
    max_seconds: float = 1800.0,
    threads: int = 1,
    margin: float = MARGIN,
    check_share: float = 0.25,
    seed: int = 0,
    base_share: float = BASE_SHARE,
) -> Outcome:
    """Train from the base weights on most tracks, check on the held-out rest against the network in use
    (`current_onnx`), and re-derive the thresholds; `work` receives the candidate ONNX file.

    grey_onnx: the network that embeds the candidate's greyscale half, the base one (the adapted network
    serves the colour half: fine-tuning on reid/train's household gained colour and lost grey,
    docs/adaptation.md); None: the candidate embeds both. current_grey_onnx: the same for the network in
    use. The check and the thresholds measure the vector that will be used. base_share: the fine-tuned
    weights are averaged with the base ones, this much of the base's (0: the fine-tuned network)."""
    from camd.adapt.train import average_with_base, export_onnx, fine_tune, load_base
    from camd.identity.evidence.osnet import OSNetEmbedder

    grey_half = "adapted" if grey_onnx is None else "base"
    train, held_out = split_for_check(list(tracks), check_share)
    counts = {"all": len(tracks), "train": len(train), "check": len(held_out),
              "confirmed": sum(t.person is not None for t in tracks)}  # fmt: skip
    current = OSNetEmbedder(current_onnx, threads=threads, grey_onnx=current_grey_onnx)
    distractors = train[:MAX_DISTRACTORS]  # the period's other tracks, for the self check's gallery
    embedded_before = embed_tracks(current, held_out)
    others_before = embed_tracks(current, distractors) if distractors else None
    before = run_check(held_out, embedded_before, distractors, others_before)
    if before.score is None:
        refused = Decision(False, "too few held-out tracks to check a network on (need 2 with 2+ crops): "
                                  "let camd run longer")  # fmt: skip
        return Outcome(None, refused, before, tracks=counts, grey_half=grey_half)
    network = load_base(base_weights, variant)
    report = fine_tune(network, train, epochs=epochs, max_seconds=max_seconds, threads=threads, seed=seed)
    average_with_base(network, base_weights, variant, base_share)
    onnx = Path(work) / "model.onnx"
    export_diff = export_onnx(network, variant, onnx)
    adapted = OSNetEmbedder(onnx, threads=threads, grey_onnx=grey_onnx)
    embedded_after = embed_tracks(adapted, held_out)
    others_after = embed_tracks(adapted, distractors) if distractors else None
    after = run_check(held_out, embedded_after, distractors, others_after)
    decision = decide(before, after, margin)
    calibration, how = derive_calibration(
        current_calibration,
        impostor_scores(held_out, embedded_before, current_calibration),
        impostor_scores(held_out, embedded_after, current_calibration),
        name=f"{current_calibration.name}+adapted",
    )
    if decision.replace and calibration is None:
        decision = Decision(False, f"{decision.reason}, but its thresholds cannot be re-derived: {how}")
    train_figures = {**report.as_dict(), "base_share": base_share, "export_max_diff": export_diff}
    return Outcome(
        onnx, decision, before, after, train_figures, calibration, how, counts, grey_half=grey_half
    )


def base_weights_file(config: Config) -> Path:
    """The base OSNet's weights on this machine (adaptation always starts from them)."""
    from camd.modelprep.osnet import _weights, weights_of

    osnet = config.identity.osnet
    return _weights(osnet, weights_of(osnet), config.models_path, False, None, ())


def base_and_current(config: Config) -> tuple[BodyModel, BodyModel]:
    from camd.identity.body_model import resolve_body_model

    base = resolve_body_model(config.identity, config.models_path, prepare=False)
    current = resolve_body_model(config.identity, config.models_path, prepare=False,
                                 adapted_dir=config.adapted_path)  # fmt: skip
    return base, current


def adapt(config: Config, *, max_seconds: float | None = None, epochs: float | None = None) -> Outcome:
    """`camd adapt`: the installation's tracks of the last `adapt.days`, trained on niced with the thread
    cap; a better network goes into use (the memory is re-embedded at the next start: apply())."""
    from camd.adapt.train import AdaptError, require_torch
    from camd.identity.calibrations import calibration_for

    settings = config.adapt
    require_torch()  # before reading anything: say at once what to install
    base, current = base_and_current(config)
    if base.kind != "osnet":
        raise AdaptError(
            f"camd adapt fine-tunes OSNet; the body model in use is {base.describe()}. Run "
            "`camd models prepare` (OSNet is the default body model), then adapt"
        )
    _lower_priority(settings.nice)
    since = time.time() - settings.days * 86400.0
    tracks = load_tracks(config.sightings_path, since=since)
    if len(tracks) < settings.min_tracks:
        raise AdaptError(
            f"only {len(tracks)} person tracks with kept crops in the last {settings.days:g} days (needs "
            f"{settings.min_tracks}, adapt.min_tracks); let camd run longer (identity.save_crops must be on)"
        )
    store = AdaptedStore(config.adapted_path, base.space)
    with tempfile.TemporaryDirectory(prefix="camd-adapt-") as work:
        outcome = adapt_on(
            tracks, base_weights=base_weights_file(config), variant=config.identity.osnet.variant,
            current_onnx=current.onnx, current_calibration=calibration_for(current), work=Path(work),
            grey_onnx=base.onnx, current_grey_onnx=current.grey_onnx,
            epochs=settings.epochs if epochs is None else epochs,
            max_seconds=settings.max_minutes * 60.0 if max_seconds is None else max_seconds,
            threads=settings.threads, margin=settings.margin,
        )  # fmt: skip
        if outcome.decision.replace and outcome.onnx is not None and outcome.calibration is not None:
            kept = keep(store, outcome, current)
            store.use(kept)
            outcome.adapted = kept.id
    _save_last_run(store, outcome)
    log.info("camd adapt: %s", outcome.decision.reason)
    return outcome


def keep(store: AdaptedStore, outcome: Outcome, current: BodyModel) -> Adapted:
    """Store a candidate network with its record (not yet in use)."""
    from camd.assets import sha256_file

    assert outcome.onnx is not None and outcome.calibration is not None
    adapted_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    record = {
        "created": time.time(), "base_space": store.base_space, "replaced": current.adapted,
        "onnx_sha256": sha256_file(outcome.onnx), "calibration": calibration_to_dict(outcome.calibration),
        **outcome.as_dict(),
    }  # fmt: skip
    return store.add(adapted_id, outcome.onnx, record)


def _save_last_run(store: AdaptedStore, outcome: Outcome) -> None:
    from camd.adapt.store import _write
    from camd.private import private_dir

    private_dir(store.folder)
    _write(store.folder / LAST_RUN, {"at": time.time(), **outcome.as_dict()})


def last_run(store: AdaptedStore) -> dict[str, Any] | None:
    try:
        value = json.loads((store.folder / LAST_RUN).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _lower_priority(nice: int) -> None:
    """Niced, so the daemon's cameras always come first on a shared CPU."""
    if nice > 0 and hasattr(os, "nice"):
        try:
            os.nice(max(0, nice - os.nice(0)))
        except OSError:
            log.warning("camd adapt: could not lower its priority (nice %d)", nice)


def apply(config: Config) -> dict[str, Any]:
    """Open the memory with the body network now in use: switching body space re-embeds every enrolled
    person's kept crops (identity/reembed.py) and finds a previous network's vectors where they were.
    While the daemon runs it holds the memory: then it happens at the daemon's next start."""
    from camd.identity.memory import MemoryLockedError
    from camd.identity.service import IdentityService

    try:
        service = IdentityService(config, load_extractors=True)
    except MemoryLockedError:
        return {"applied": False, "why": "the running daemon holds the memory: restart it to use the network "
                                         "now in use (it re-embeds everyone at start)"}  # fmt: skip
    try:
        return {"applied": True, "body_space": service.memory.body_space, "model": service.body_model.label}
    finally:
        service.close()
