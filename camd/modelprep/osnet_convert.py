"""Model-prepare step: a torchreid OSNet checkpoint -> an ONNX body embedder, checked against torch.

Torch is needed here only, once, when the model is prepared; camd runs the ONNX file with onnxruntime.
The ONNX graph takes (N, 3, 256, 128) ImageNet-normalised RGB and returns (N, 512) L2-normalised
features (the network's eval-mode output, normalised so a dot product is the cosine similarity).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camd.assets import AssetError
from camd.identity.evidence.osnet import INPUT_HW

# ONNX vs torch on the same input: float32 round-off across ~60 layers stays far below this.
MAX_EXPORT_DIFF = 1e-4
_PREFIXES = ("module.",)  # nn.DataParallel's prefix in checkpoints saved while training on GPUs
_DROPPED = ("classifier.",)  # the training identities' classifier: not part of the embedding


class OSNetWeightsError(AssetError):
    """The OSNet weights file cannot be used; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ExportReport:
    onnx_path: Path
    variant: str
    max_abs_diff: float  # onnxruntime vs torch on the check batch


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a torchreid checkpoint: a plain state dict or {'state_dict': ...}; keys may carry
    `module.`; the classifier is dropped. Loaded with weights_only=True (no arbitrary code from a pickle);
    numpy scalars and dtypes, which torchreid stores beside the weights (e.g. rank-1), are allowed."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise OSNetWeightsError(f"OSNet weights not found at {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:
        allowed = _numpy_globals(path)
        if allowed is None:
            raise OSNetWeightsError(
                f"{path} is not a checkpoint torch can load safely ({type(first).__name__}: "
                f"{str(first).splitlines()[0][:200]}). Save only the weights from a trusted copy: "
                "python -c \"import torch; c = torch.load('IN.pth', weights_only=False); "
                "torch.save(c.get('state_dict', c), 'OUT.pth')\" and point identity.osnet at OUT.pth"
            ) from None
        with torch.serialization.safe_globals(allowed):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not state:
        raise OSNetWeightsError(
            f"{path} holds no state dict (found {type(loaded).__name__}): expected torchreid's model-zoo "
            "file, a dict of tensors or {'state_dict': {...}}"
        )
    tensors: dict[str, Any] = {}
    for key, value in state.items():
        name = str(key)
        for prefix in _PREFIXES:
            name = name.removeprefix(prefix)
        if name.startswith(_DROPPED):
            continue
        if not isinstance(value, torch.Tensor):
            raise OSNetWeightsError(
                f"{path}: state dict entry {key!r} is a {type(value).__name__}, not a tensor"
            )
        tensors[name] = value
    return tensors


def _numpy_globals(path: Path) -> list[Any] | None:
    """The numpy types a checkpoint needs, when those are all it needs beyond tensors; else None."""
    import numpy as np
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        return None
    scalar = (np._core if hasattr(np, "_core") else np.core).multiarray.scalar  # numpy 2 / numpy 1
    known: dict[str, Any] = {
        "numpy.dtype": np.dtype,
        "numpy._core.multiarray.scalar": (scalar, "numpy._core.multiarray.scalar"),
        "numpy.core.multiarray.scalar": (scalar, "numpy.core.multiarray.scalar"),
    }
    if not names or not all(n in known or n.startswith("numpy.dtypes.") for n in names):
        return None
    # Unpickling a dtype also builds its class (numpy.dtypes.Float64DType...), which the scan does not list.
    dtype_classes = [t for t in vars(np.dtypes).values() if isinstance(t, type) and issubclass(t, np.dtype)]
    return [*known.values(), *dtype_classes]


def check_fit(state: dict[str, Any], variant: str, source: str) -> None:
    """Raise OSNetWeightsError naming missing, unexpected and mis-shaped keys (and the variant the file
    does fit, when one does) unless `state` fits `variant` exactly."""
    from camd.modelprep.osnet_network import VARIANTS, build_osnet

    expected = {k: tuple(v.shape) for k, v in build_osnet(variant).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got == expected:
        return
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        first = shapes[0]
        problems.append(
            f"{len(shapes)} shape mismatches (e.g. {first}: file {got[first]}, {variant} {expected[first]})"
        )
    fits = [
        name
        for name in VARIANTS
        if name != variant and {k: tuple(v.shape) for k, v in build_osnet(name).state_dict().items()} == got
    ]
    hint = (
        f"the file fits {fits[0]}: set identity.osnet.variant: {fits[0]}"
        if fits
        else "it is not an OSNet checkpoint camd knows (torchreid's osnet_* and osnet_ain_* models)"
    )
    raise OSNetWeightsError(f"{source} does not fit {variant}: {'; '.join(problems)}; {hint}")


def load_osnet(weights: Path, variant: str) -> Any:
    """The OSNet `variant` with the checkpoint's weights, strictly (every key, every shape), in eval mode."""
    from camd.modelprep.osnet_network import build_osnet

    state = read_state_dict(weights)
    check_fit(state, variant, str(weights))
    model = build_osnet(variant)
    model.load_state_dict(state, strict=True)
    return model.eval()


def export_osnet_onnx(
    weights: Path, onnx_path: Path, variant: str, input_hw: tuple[int, int] = INPUT_HW
) -> ExportReport:
    """Write the embedder as ONNX (dynamic batch), then run it with onnxruntime on a check batch and
    refuse the file unless it matches torch within MAX_EXPORT_DIFF."""
    try:
        import torch
    except ImportError as error:  # torch is a prepare-time tool, not a run-time dependency
        raise OSNetWeightsError(
            "converting OSNet weights to ONNX needs torch (pip install torch==2.13.0); "
            "camd runs the ONNX file without it"
        ) from error
    from camd.modelprep.osnet_network import UnitEmbedding

    embedder = UnitEmbedding(load_osnet(weights, variant)).eval()
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but needs no extra packages (the new one wants onnxscript).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            embedder,
            (torch.zeros(1, 3, *input_hw),),
            str(onnx_path),
            input_names=["image"],
            output_names=["embedding"],
            dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    generator = torch.Generator().manual_seed(0)
    check = torch.randn(3, 3, *input_hw, generator=generator)  # batch 3: the batch axis really is dynamic
    with torch.no_grad():
        expected = embedder(check).numpy()
    diff = float(abs(_run_onnx(onnx_path, check.numpy()) - expected).max())
    if not diff <= MAX_EXPORT_DIFF:  # also catches NaN
        onnx_path.unlink(missing_ok=True)
        raise OSNetWeightsError(
            f"the ONNX export of {variant} differs from torch by {diff:.2e} (limit {MAX_EXPORT_DIFF:.0e}); "
            "the file was removed. Report it with your torch and onnxruntime versions"
        )
    return ExportReport(onnx_path, variant, diff)


def _run_onnx(onnx_path: Path, batch: Any) -> Any:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": batch})[0]


def torch_embed(weights: Path, variant: str, batch: Any) -> Any:
    """The torch forward of the same embedder on a preprocessed (N, 3, H, W) float32 batch: (N, 512)
    unit vectors. For checks and tests; camd itself runs the ONNX file."""
    import torch

    from camd.modelprep.osnet_network import UnitEmbedding

    embedder = UnitEmbedding(load_osnet(weights, variant)).eval()
    with torch.no_grad():
        return embedder(torch.from_numpy(batch)).numpy()
