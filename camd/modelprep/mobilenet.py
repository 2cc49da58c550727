"""Model-prepare step: MobileNetV2 ImageNet weights (torchvision's .pth file) -> an ONNX feature extractor.

Torch is needed here only, once, when the model is prepared; at run time camd runs the ONNX file with
onnxruntime. The network below is MobileNetV2 (Sandler et al. 2018) written from the paper, laid out so
that torchvision's state-dict keys load into it unchanged (features.N..., classifier.1).

The exported graph stops after `features.14` (the first 160-channel block, stride 32) and outputs its
feature map (N, 160, H/32, W/32) unpooled, so the embedder can pool it row by row. Measured on
reid/train (docs/identity.md), that block re-identifies people better than the final 1280-channel layer
(rank-1 0.55 vs 0.34) and the truncated network is cheaper to run.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

# (expansion t, output channels c, repeats n, first stride s) from the paper's table 2.
_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _build_mobilenet_v2() -> Any:
    import torch
    from torch import nn

    def conv_bn_relu(inp: int, out: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU6(inplace=True),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = inp * expand
            self.use_residual = stride == 1 and inp == out
            layers: list[nn.Module] = []
            if expand != 1:
                layers.append(conv_bn_relu(inp, hidden, 1, 1))
            layers += [
                conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
                nn.Conv2d(hidden, out, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.use_residual else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = [conv_bn_relu(3, 32, 3, 2)]
            inp = 32
            for expand, out, repeats, stride in _SETTINGS:
                for i in range(repeats):
                    layers.append(InvertedResidual(inp, out, stride if i == 0 else 1, expand))
                    inp = out
            layers.append(conv_bn_relu(inp, 1280, 1, 1))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.features(x)

    return MobileNetV2()


# features.0 .. features.14: the stem, then blocks up to the first of the 160-channel stage.
APPEARANCE_BLOCKS = 15


def export_mobilenet_v2_onnx(weights: Path, onnx_path: Path, input_hw: tuple[int, int] = (256, 128)) -> Path:
    """Load torchvision's MobileNetV2 ImageNet weights and write the feature extractor as ONNX.

    The batch dimension is dynamic; height and width are fixed at `input_hw` (a taller-than-wide person
    shape by default: 256x128 is the usual re-ID input, larger costs time without helping 48x128 crops).
    """
    try:
        import torch
    except ImportError as error:  # torch is a prepare-time tool, not a run-time dependency
        raise RuntimeError(
            "exporting MobileNetV2 to ONNX needs torch (pip install torch==2.13.0); camd runs ONNX without it"
        ) from error
    weights, onnx_path = Path(weights), Path(onnx_path)
    if not weights.is_file():
        raise FileNotFoundError(f"MobileNetV2 weights not found: {weights}")
    model = _build_mobilenet_v2()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)  # strict: a different file fails here, not silently later
    trunk = model.features[:APPEARANCE_BLOCKS].eval()
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, *input_hw)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but needs no extra packages (the new one wants onnxscript).
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(torch, trunk, dummy, onnx_path)
    check_onnx_matches(torch, trunk, onnx_path, input_hw)
    return onnx_path


# The ONNX file's bytes differ between CPUs (constant folding rounds floats differently), so the
# export is verified by what it computes: the same features as torch on a fixed pseudo-random batch.
MAX_ABS_DIFF = 1e-3


def check_onnx_matches(torch: Any, module: Any, onnx_path: Path, input_hw: tuple[int, int]) -> None:
    import numpy as np
    import onnxruntime as ort

    rng = np.random.default_rng(20261122)
    batch = rng.standard_normal((2, 3, *input_hw)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(batch)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: batch})
    worst = float(np.abs(got - expected).max())
    if got.shape != expected.shape or worst > MAX_ABS_DIFF:
        raise RuntimeError(
            f"the exported ONNX disagrees with the torch model (shape {got.shape} vs {expected.shape}, "
            f"max abs diff {worst:.2e} > {MAX_ABS_DIFF}); the export is broken, report it"
        )


def _export(torch: Any, trunk: Any, dummy: Any, onnx_path: Path) -> None:
    torch.onnx.export(
        trunk,
        (dummy,),
        str(onnx_path),
        input_names=["image"],
        output_names=["features"],
        dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
