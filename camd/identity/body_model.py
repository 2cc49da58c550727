"""Which body embedder this install runs, under what name its vectors are kept, and how it is loaded.

`identity.body_model: osnet` (the default) means OSNet, a network trained for person re-identification:
camd's own weights (osnet_x0_25 trained on MSMT17, fetched by `camd models prepare` with its checksum) or
the user's. When those weights cannot be had (no network, no file, no torch to convert them), camd falls
back to the ImageNet MobileNetV2 that ships in a registry package, and says so: one line in the log at
start, in /health, in the demo's summary and in `camd eval`.

Vectors of different backbones (or weights) are not comparable, so each `BodyModel` names a body space:
the memory keeps one prototype collection per space, and the sighting log each sighting's body vector
under its space. OSNet vectors hold a colour half and a greyscale half (evidence/osnet.py), so their space
name carries `_cg`: 512-d OSNet vectors of earlier versions live in a space of their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from camd.assets import AssetError, DownloadPolicy
from camd.identity.body_compare import BodyCalibration
from camd.identity.evidence.body import MOBILENET_DIM, MOBILENET_SPACE, BodyAppearanceEmbedder, BodyEmbedder

if TYPE_CHECKING:
    from camd.config.schema import IdentityConfig

log = logging.getLogger(__name__)

# A daemon start tries a missing download once (`camd models prepare` retries as usual): a hub without
# internet must not wait at every start.
START_POLICY = DownloadPolicy(attempts=1, timeout_s=20.0)


@dataclass(frozen=True, slots=True)
class BodyModel:
    """The body embedder in use: what it is, its vector space in the memory, and where its model is."""

    kind: Literal["osnet", "mobilenetv2"]
    space: str
    dim: int
    onnx: Path
    label: str  # for people: "OSNet x0.25 (MSMT17)"
    fallback_reason: str | None = None  # why the configured model is not the one in use
    # An adapted network (`camd adapt`, camd/adapt/store.py): its id and the thresholds re-derived for it.
    adapted: str | None = None
    calibration: BodyCalibration | None = None
    # The network of the greyscale half when it is not `onnx`'s: an adapted network serves the colour half
    # only, the shipped one keeps the grey half (evidence/osnet.py).
    grey_onnx: Path | None = None

    @property
    def halves(self) -> bool:
        """Vectors hold a colour half and a greyscale half (OSNet), compared half by half."""
        return self.kind == "osnet"

    def describe(self) -> str:
        if self.fallback_reason is None:
            return self.label
        return f"{self.label}, fallback: {self.fallback_reason}"

    def status(self) -> dict[str, object]:
        """For /health and the demo's summary."""
        return {"model": self.kind, "label": self.label, "space": self.space,
                "fallback": self.fallback_reason}  # fmt: skip

    def load(self, threads: int = 2) -> BodyEmbedder:
        if self.kind == "osnet":
            from camd.identity.evidence.osnet import OSNetEmbedder

            return OSNetEmbedder(self.onnx, threads=threads, name=self.space, grey_onnx=self.grey_onnx)
        return BodyAppearanceEmbedder(self.onnx, threads=threads)


def resolve_body_model(
    identity: IdentityConfig,
    models_dir: Path,
    *,
    prepare: bool = True,
    policy: DownloadPolicy | None = START_POLICY,
    local: tuple[Path, ...] = (),
    adapted_dir: Path | None = None,
) -> BodyModel:
    """The body model this config gets on this machine. prepare=False only looks at what is prepared
    (commands that read the memory must not download); a MobileNetV2 fallback is prepared either way,
    since it comes from a registry package. adapted_dir: where this installation's adapted networks are
    (`Config.adapted_path`); the current one, when there is one, replaces the OSNet it was adapted from."""
    if identity.body_model == "osnet":
        from camd.identity.evidence.osnet import EMBEDDING_DIM
        from camd.modelprep.osnet import cached_onnx, prepare_osnet, space_id

        osnet = identity.osnet
        label = ("OSNet x0.25 re-ID (MSMT17, camd's default)" if osnet.shipped
                 else f"OSNet {osnet.variant} re-ID (your weights)")  # fmt: skip
        space = f"{space_id(osnet)}_cg"
        try:
            onnx = (prepare_osnet(osnet, models_dir, policy=policy, local=local) if prepare
                    else cached_onnx(osnet, models_dir))  # fmt: skip
            reason = None if onnx is not None else "its weights are not prepared (camd models prepare)"
        except AssetError as exc:
            onnx, reason = None, str(exc)
        if onnx is not None:
            model = BodyModel("osnet", space, 2 * EMBEDDING_DIM, onnx, label)
            if adapted_dir is not None:
                from camd.adapt.store import current_model

                return current_model(model, adapted_dir)
            return model
        # Not prepared: the daemon would have fallen back too, so a command reading the memory must use
        # the same space as the daemon did.
        return _mobilenet(models_dir, prepare, fallback=f"OSNet unavailable: {reason}")
    return _mobilenet(models_dir, prepare)


def _mobilenet(models_dir: Path, prepare: bool, fallback: str | None = None) -> BodyModel:
    from camd.identity.model_files import model_file

    label = "MobileNetV2 ImageNet features (generic, not trained for re-ID)"
    onnx = model_file(models_dir, "appearance_onnx", prepare=prepare)
    return BodyModel("mobilenetv2", MOBILENET_SPACE, MOBILENET_DIM, onnx, label, fallback)


def log_body_model(model: BodyModel) -> None:
    """The one line at start that says which body model runs (a warning when it is the fallback)."""
    if model.fallback_reason is None:
        log.info("identity: body model %s (memory space %s)", model.label, model.space)
    else:
        log.warning(
            "identity: body model %s, as a FALLBACK: %s. Recognition without a face is much weaker; "
            "fix it with `camd models prepare` (or `camd models prepare --from DIR` with the weights file "
            "in DIR), then restart", model.label, model.fallback_reason,
        )  # fmt: skip
