"""Fine-tune OSNet on an installation's own tracks (torch; `pip install camd[adapt]`).

Batch-hard triplet loss (Hermans et al. 2017): a batch holds up to 8 people who are surely different
(tracks on one camera at the same time, or people confirmed as different) with 4 crops each; every crop's
hardest positive must come closer than its hardest negative by a margin. Augmentation makes one camera's
white balance, light or IR night mode no reason to tell people apart: random per-channel gains, brightness,
greyscale, horizontal flips and small shifts; Adam 5e-5 (docs/adaptation.md: the measurements).

Never imported by the daemon: `camd adapt` imports it, niced and with a thread cap.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camd.adapt.tracks import AdaptTrack, known_different
from camd.identity.evidence.osnet import INPUT_HW

IDS_PER_BATCH = 8
CROPS_PER_ID = 4
MARGIN = 0.3  # on the raw 512-d features, as torchreid's triplet loss
GREY_SHARE = 0.2  # crops turned greyscale in training (an IR camera; the grey half)
LEARNING_RATE = 5e-5  # 3e-4 (issue 14) lost rank-1 of camd's two-half vector here (docs/adaptation.md)
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)


class AdaptError(RuntimeError):
    """Adaptation cannot run as asked; the message says why and what to do."""


@dataclass
class TrainReport:
    epochs: float = 0.0  # batches run / batches an epoch
    batches: int = 0
    crops: int = 0
    labels: int = 0
    loss_first: float | None = None  # mean loss of the first epoch's batches
    loss_last: float | None = None  # ... and of the last batches
    seconds: float = 0.0
    stopped_by_time: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def require_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise AdaptError(
            "camd adapt needs torch: pip install 'camd[adapt]' (it pins torch==2.13.0, CPU). The daemon "
            "itself never needs it"
        ) from None
    return torch


@dataclass
class _Label:
    name: str
    crops: list[np.ndarray]  # RGB uint8 HWC at the input size (a quarter of float32's memory)
    different: set[int]  # indices of labels surely different from this one


def _prepared(crop: np.ndarray) -> np.ndarray:
    height, width = INPUT_HW
    return cv2.cvtColor(cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)


def build_labels(tracks: Sequence[AdaptTrack]) -> list[_Label]:
    """One label per confirmed person or unconfirmed track, with the labels it is surely different from."""
    by_label: dict[str, list[AdaptTrack]] = {}
    for track in tracks:
        by_label.setdefault(track.label, []).append(track)
    names = sorted(by_label)
    index = {name: i for i, name in enumerate(names)}
    labels = [_Label(n, [_prepared(c) for t in by_label[n] for c in t.crops], set()) for n in names]
    # Concurrent tracks on one camera: sort by start, sweep (tracks are short).
    by_camera: dict[str, list[AdaptTrack]] = {}
    for track in tracks:
        by_camera.setdefault(track.camera, []).append(track)
    for camera_tracks in by_camera.values():
        camera_tracks.sort(key=lambda t: t.start)
        for i, a in enumerate(camera_tracks):
            for b in camera_tracks[i + 1 :]:
                if b.start >= a.end:
                    break
                if known_different(a, b):
                    labels[index[a.label]].different.add(index[b.label])
                    labels[index[b.label]].different.add(index[a.label])
    people = [i for i, n in enumerate(names) if n.startswith("person:")]
    for i in people:
        labels[i].different.update(j for j in people if j != i)
    return labels


def _batches(labels: list[_Label], rng: random.Random) -> list[list[int]]:
    """One epoch of batches: each a set of labels pairwise surely different (a greedy clique around a
    random seed), with at least two labels."""
    total = sum(len(label.crops) for label in labels)
    count = max(1, total // (IDS_PER_BATCH * CROPS_PER_ID))
    seeds = [i for i, label in enumerate(labels) if label.different]
    out = []
    for _ in range(count):
        if not seeds:
            break
        seed = rng.choice(seeds)
        chosen = [seed]
        candidates = list(labels[seed].different)
        rng.shuffle(candidates)
        for c in candidates:
            if len(chosen) >= IDS_PER_BATCH:
                break
            if all(c in labels[k].different for k in chosen):
                chosen.append(c)
        out.append(chosen)
    return out


def _augment(torch: Any, batch: Any, generator: Any, grey_share: float = GREY_SHARE) -> Any:
    """(N, 3, H, W) RGB in [0, 1] -> augmented and ImageNet-normalised."""
    n = batch.shape[0]
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    flip = rand(n) < 0.5
    batch = torch.where(flip.view(n, 1, 1, 1), batch.flip(3), batch)
    gains = 0.75 + 0.5 * rand(n, 3, 1, 1)  # white balance
    brightness = 0.6 + 0.8 * rand(n, 1, 1, 1)
    batch = (batch * gains * brightness).clamp(0.0, 1.0)
    grey = (0.299 * batch[:, 0] + 0.587 * batch[:, 1] + 0.114 * batch[:, 2]).unsqueeze(1)
    grey = grey.expand(-1, 3, -1, -1)
    batch = torch.where((rand(n) < grey_share).view(n, 1, 1, 1), grey, batch)
    # A small random shift (pad by reflection, crop back): boxes never sit the same way twice.
    pad = 8
    padded = torch.nn.functional.pad(batch, (pad, pad, pad, pad), mode="reflect")
    dy, dx = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=generator))
    batch = padded[:, :, dy : dy + batch.shape[2], dx : dx + batch.shape[3]]
    return (batch - torch.from_numpy(_MEAN)) / torch.from_numpy(_STD)


def batch_hard_triplet(
    torch: Any, features: Any, targets: Any, margin: float = MARGIN, normalise: bool = False
) -> Any:
    unit = torch.nn.functional.normalize(features, dim=1) if normalise else features
    distance = torch.cdist(unit, unit)
    same = targets.view(-1, 1) == targets.view(1, -1)
    hardest_positive = (distance * same).max(dim=1).values
    hardest_negative = distance.masked_fill(same, float("inf")).min(dim=1).values
    return torch.relu(hardest_positive - hardest_negative + margin).mean()


def fine_tune(
    network: Any,
    tracks: Sequence[AdaptTrack],
    *,
    epochs: float = 3.0,
    max_seconds: float = 1800.0,
    threads: int = 1,
    seed: int = 0,
    learning_rate: float = LEARNING_RATE,
    grey_share: float = GREY_SHARE,
) -> TrainReport:
    """Train `network` (an OSNet, torch) in place on the tracks; stops after `epochs` or `max_seconds`."""
    torch = require_torch()
    torch.set_num_threads(max(1, threads))
    started = time.monotonic()
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    labels = build_labels(tracks)
    report = TrainReport(crops=sum(len(label.crops) for label in labels), labels=len(labels))
    trainable = [i for i, label in enumerate(labels) if label.different]
    if len(trainable) < 2:
        raise AdaptError(
            "nothing to learn from yet: adaptation needs tracks of people surely different from each other "
            "(two people on one camera at the same time, or people named by a face or `camd correct --is`); "
            f"found {len(tracks)} tracks with crops and {len(trainable)} such. Let camd run longer"
        )
    optimiser = torch.optim.Adam(network.parameters(), lr=learning_rate, weight_decay=5e-4)
    network.train()
    per_epoch = len(_batches(labels, random.Random(seed)))
    losses: list[float] = []
    first_epoch: list[float] = []
    while report.batches < epochs * per_epoch:
        for chosen in _batches(labels, rng):
            if report.batches >= epochs * per_epoch:
                break
            if time.monotonic() - started > max_seconds:
                report.stopped_by_time = True
                break
            images, targets = [], []
            for k, label_index in enumerate(chosen):
                crops = labels[label_index].crops
                picks = rng.sample(range(len(crops)), CROPS_PER_ID) if len(crops) >= CROPS_PER_ID else [
                    rng.randrange(len(crops)) for _ in range(CROPS_PER_ID)]  # fmt: skip
                images += [crops[p] for p in picks]
                targets += [k] * CROPS_PER_ID
            batch = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
            features = network(_augment(torch, batch, generator, grey_share))
            loss = batch_hard_triplet(torch, features, torch.tensor(targets))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            report.batches += 1
            if report.batches <= per_epoch:
                first_epoch.append(losses[-1])
        if report.stopped_by_time:
            break
    network.eval()
    report.epochs = report.batches / max(1, per_epoch)
    report.loss_first = float(np.mean(first_epoch)) if first_epoch else None
    report.loss_last = float(np.mean(losses[-max(1, per_epoch // 3) :])) if losses else None
    report.seconds = time.monotonic() - started
    return report


def load_base(weights: Path, variant: str) -> Any:
    """The OSNet to start from: the base network's weights (never a previous adaptation: every run
    starts from the shipped network, so nothing drifts from one night to the next)."""
    require_torch()
    from camd.modelprep.osnet_convert import load_osnet

    return load_osnet(weights, variant)


def average_with_base(network: Any, base_weights: Path, variant: str, base_share: float) -> None:
    """The fine-tuned weights averaged with the base network's, in place: base_share x base + the rest x
    fine-tuned (weight-space ensembling, Wortsman et al. 2022, "WiSE-FT"). Both start from the same
    weights, so the average is a network between the two: on reid/train's household it kept what
    fine-tuning gained on unseen people and lost less of what the base knew (docs/adaptation.md)."""
    if base_share <= 0.0:
        return
    base = load_base(base_weights, variant).state_dict()
    tuned = network.state_dict()
    network.load_state_dict({
        k: base_share * base[k] + (1.0 - base_share) * v if v.is_floating_point() else v
        for k, v in tuned.items()
    })  # fmt: skip


def export_onnx(network: Any, variant: str, onnx_path: Path) -> float:
    """The trained network as camd's ONNX body embedder (the shipped network's format, checked against
    torch); returns the export's max difference from torch."""
    torch = require_torch()
    from camd.modelprep.osnet_convert import export_osnet_onnx

    with tempfile.TemporaryDirectory(prefix="camd-adapt-") as work:
        weights = Path(work) / "adapted.pth"
        torch.save({k: v.detach().clone() for k, v in network.state_dict().items()}, weights)
        return export_osnet_onnx(weights, onnx_path, variant).max_abs_diff
