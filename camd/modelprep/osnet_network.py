"""OSNet, the omni-scale person re-ID network (Zhou et al., ICCV 2019; OSNet-AIN: arXiv 1910.06827), in torch.

Written from the papers' description; only the module attribute names follow torchreid's, so that the
state dicts torchreid publishes (its model zoo) load here with `load_state_dict(strict=True)`:

- stem `conv1` (7x7 stride 2 conv, norm, ReLU) then a 3x3 stride 2 `maxpool`;
- stages `conv2`, `conv3`, `conv4`, two omni-scale blocks each; after `conv2` and `conv3` a transition
  (1x1 conv + 2x2 average pool) halves the resolution (torchreid keeps it as the stage's third item,
  or, in the AIN layout, as `pool2` / `pool3`);
- `conv5` (1x1 conv), global average pool, `fc` (Linear 512 + BatchNorm1d + ReLU).

An omni-scale block squeezes to a quarter of its width (1x1), runs T=4 streams of 1, 2, 3 and 4 "lite"
3x3 layers (a 1x1 conv then a depthwise 3x3), so the streams see growing receptive fields; one shared
aggregation gate (global pool, bottleneck, sigmoid) weighs each stream per channel before they are
summed; a 1x1 conv widens back and a residual connection adds the input. The IBN variant adds instance
norm after the residual in the first stage; AIN (found by architecture search) puts instance norm inside
the residual branch of chosen blocks.

This module needs torch and is used at model-prepare time only; camd runs the exported ONNX file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from camd.identity.evidence.osnet import EMBEDDING_DIM

STREAMS = 4  # T in the paper: streams of 1..T lite 3x3 layers
BOTTLENECK = 4  # block width / stream width
GATE_REDUCTION = 16  # aggregation gate bottleneck

# Where a block puts instance norm: nowhere, on the block output ("after", IBN), or on the residual
# branch before the sum ("inside", AIN; that branch then has no batch norm).
InstanceNormAt = Literal["none", "after", "inside"]


@dataclass(frozen=True, slots=True)
class OSNetSpec:
    widths: tuple[int, int, int, int]  # stem, then the three stages' output channels
    layout: Literal["osnet", "ain"]  # torchreid's two module layouts (transitions, stream containers)
    stem_instance_norm: bool
    # Per stage, per block: where its instance norm goes.
    blocks: tuple[tuple[InstanceNormAt, InstanceNormAt], ...]


_PLAIN: tuple[tuple[InstanceNormAt, InstanceNormAt], ...] = (("none", "none"),) * 3
_IBN: tuple[tuple[InstanceNormAt, InstanceNormAt], ...] = (
    ("after", "after"),
    ("none", "none"),
    ("none", "none"),
)
_AIN: tuple[tuple[InstanceNormAt, InstanceNormAt], ...] = (
    ("inside", "inside"),
    ("none", "inside"),
    ("inside", "none"),
)
_X1_0, _X0_75, _X0_5, _X0_25 = (
    (64, 256, 384, 512),
    (48, 192, 288, 384),
    (32, 128, 192, 256),
    (16, 64, 96, 128),
)

# Named as torchreid names them, so a model-zoo file name says which to choose.
VARIANTS: dict[str, OSNetSpec] = {
    "osnet_x1_0": OSNetSpec(_X1_0, "osnet", False, _PLAIN),
    "osnet_x0_75": OSNetSpec(_X0_75, "osnet", False, _PLAIN),
    "osnet_x0_5": OSNetSpec(_X0_5, "osnet", False, _PLAIN),
    "osnet_x0_25": OSNetSpec(_X0_25, "osnet", False, _PLAIN),
    "osnet_ibn_x1_0": OSNetSpec(_X1_0, "osnet", True, _IBN),
    "osnet_ain_x1_0": OSNetSpec(_X1_0, "ain", True, _AIN),
    "osnet_ain_x0_75": OSNetSpec(_X0_75, "ain", True, _AIN),
    "osnet_ain_x0_5": OSNetSpec(_X0_5, "ain", True, _AIN),
    "osnet_ain_x0_25": OSNetSpec(_X0_25, "ain", True, _AIN),
}


class ConvNorm(nn.Module):
    """A bias-free conv, an optional batch (or instance) norm, an optional ReLU. Keys: conv.*, bn.*."""

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        kernel: int,
        stride: int = 1,
        *,
        relu: bool = True,
        norm: bool = True,
        instance_norm: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, kernel, stride, kernel // 2, bias=False)
        self.bn: nn.Module | None = None
        if norm:
            self.bn = (
                nn.InstanceNorm2d(channels_out, affine=True)
                if instance_norm
                else nn.BatchNorm2d(channels_out)
            )
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class Lite3x3(nn.Module):
    """The paper's lite 3x3: a linear 1x1 conv, then a depthwise 3x3, norm and ReLU (far fewer weights
    than a full 3x3)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv2(self.conv1(x))))


class LiteStream(nn.Module):
    """A chain of `depth` lite 3x3 layers (the AIN layout's container; key prefix `layers.`)."""

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(Lite3x3(channels) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class AggregationGate(nn.Module):
    """The unified aggregation gate: channel weights in 0..1 computed from a stream's own pooled output.
    One gate (one set of weights) is shared by every stream of a block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // GATE_REDUCTION, 1, bias=True)
        self.fc2 = nn.Conv2d(channels // GATE_REDUCTION, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * weights


class OmniScaleBlock(nn.Module):
    def __init__(
        self, channels_in: int, channels_out: int, layout: str, instance_norm: InstanceNormAt = "none"
    ) -> None:
        super().__init__()
        mid = channels_out // BOTTLENECK
        self.instance_norm = instance_norm
        self.conv1 = ConvNorm(channels_in, mid, 1)
        if layout == "ain":
            self.conv2 = nn.ModuleList(LiteStream(mid, depth) for depth in range(1, STREAMS + 1))
        else:  # torchreid's OSNet names the streams conv2a..conv2d; the shallowest is a bare layer
            self.conv2a = Lite3x3(mid)
            self.conv2b = nn.Sequential(*(Lite3x3(mid) for _ in range(2)))
            self.conv2c = nn.Sequential(*(Lite3x3(mid) for _ in range(3)))
            self.conv2d = nn.Sequential(*(Lite3x3(mid) for _ in range(4)))
        self.gate = AggregationGate(mid)
        self.conv3 = ConvNorm(mid, channels_out, 1, relu=False, norm=instance_norm != "inside")
        self.downsample = (
            ConvNorm(channels_in, channels_out, 1, relu=False) if channels_in != channels_out else None
        )
        self.IN = nn.InstanceNorm2d(channels_out, affine=True) if instance_norm != "none" else None

    def streams(self) -> list[nn.Module]:
        if hasattr(self, "conv2a"):
            return [self.conv2a, self.conv2b, self.conv2c, self.conv2d]
        return list(self.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.conv1(x)
        fused = sum(self.gate(stream(squeezed)) for stream in self.streams())
        residual = self.conv3(fused)
        if self.instance_norm == "inside" and self.IN is not None:
            residual = self.IN(residual)
        out = residual + (self.downsample(x) if self.downsample is not None else x)
        if self.instance_norm == "after" and self.IN is not None:
            out = self.IN(out)
        return F.relu(out)


def _transition(channels: int) -> nn.Sequential:
    """1x1 conv then a 2x2 average pool: halves height and width between stages."""
    return nn.Sequential(ConvNorm(channels, channels, 1), nn.AvgPool2d(2, stride=2))


class OSNet(nn.Module):
    """The re-ID feature extractor: (N, 3, H, W) ImageNet-normalised RGB -> (N, 512) features (eval mode).

    Only the feature layers exist here: a checkpoint's `classifier.*` (training identities) is dropped
    before loading.
    """

    def __init__(self, spec: OSNetSpec) -> None:
        super().__init__()
        stem, *stages = spec.widths
        self.layout = spec.layout
        self.conv1 = ConvNorm(3, stem, 7, stride=2, instance_norm=spec.stem_instance_norm)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths_in = [stem, *stages[:-1]]
        for index, (width_in, width, norms) in enumerate(zip(widths_in, stages, spec.blocks, strict=True)):
            blocks: list[nn.Module] = [
                OmniScaleBlock(width_in, width, spec.layout, norms[0]),
                OmniScaleBlock(width, width, spec.layout, norms[1]),
            ]
            stage_name = f"conv{index + 2}"
            shrinks = index < len(stages) - 1
            if shrinks and spec.layout == "osnet":
                blocks.append(_transition(width))
            setattr(self, stage_name, nn.Sequential(*blocks))
            if shrinks and spec.layout == "ain":
                setattr(self, f"pool{index + 2}", _transition(width))
        self.conv5 = ConvNorm(stages[-1], stages[-1], 1)
        self.fc = nn.Sequential(
            nn.Linear(stages[-1], EMBEDDING_DIM), nn.BatchNorm1d(EMBEDDING_DIM), nn.ReLU()
        )

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv2(x)
        if self.layout == "ain":
            x = self.pool2(x)
        x = self.conv3(x)
        if self.layout == "ain":
            x = self.pool3(x)
        return self.conv5(self.conv4(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.feature_map(x).mean(dim=(2, 3)))


def build_osnet(variant: str) -> OSNet:
    """An untrained OSNet of a torchreid variant name (see VARIANTS)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown OSNet variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return OSNet(VARIANTS[variant])


class UnitEmbedding(nn.Module):
    """A network followed by L2 normalisation: what the ONNX file computes (a dot product is a cosine)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.network(image), dim=1)
