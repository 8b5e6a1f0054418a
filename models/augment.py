"""Augmentation of training batches on the training device, and test-time flip averaging.

Every transform works on a whole batch at once (a per-sample mask for the flip, a gather index built from
per-sample offsets for the translation): no Python loop over samples. The random draws come from a generator
seeded by (member seed, epoch, step) alone, so a resumed attempt draws what an uninterrupted run draws.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from models.spec import AugmentSpec

# Test-time augmentation of predictions (?tta=): "flip" averages each image's probabilities with its mirror's.
Tta = Literal["flip"]


def batch_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The generator of one member's draws at one step. A CPU generator: the draws (a few numbers per sample)
    are then the same on every device, and only they travel; the images are transformed where they are."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + step)


def flip_mask(n: int, generator: torch.Generator) -> torch.Tensor:
    """Which of n samples are mirrored: each with probability 1/2."""
    return torch.rand(n, generator=generator) < 0.5


def translation_offsets(n: int, translate: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample (dy, dx), each uniform in -translate..translate: the shift of the content, in pixels."""
    return torch.randint(-translate, translate + 1, (n, 2), generator=generator)


def flip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (N, C, H, W) with the samples where `mask` is true mirrored left to right."""
    return torch.where(mask.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def translate(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """x (N, C, H, W) with sample i's content moved down by offsets[i, 0] and right by offsets[i, 1] pixels.

    Pad and crop: the batch is padded by the largest shift with its edge pixels (replicate: the border,
    background in these datasets, continues, whatever the normalisation made of black), then each sample's
    H x W window is taken with one advanced-indexing gather. torch.roll would wrap content around instead.
    """
    pad = int(offsets.abs().max()) if len(offsets) else 0
    if pad == 0:
        return x
    n, _, height, width = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    offsets = offsets.to(x.device)
    # Output pixel (i, j) of sample s is input pixel (i - dy, j - dx): padded (pad + i - dy, pad + j - dx).
    rows = (pad - offsets[:, 0]).view(n, 1) + torch.arange(height, device=x.device)  # (N, H)
    cols = (pad - offsets[:, 1]).view(n, 1) + torch.arange(width, device=x.device)  # (N, W)
    samples = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channels = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[samples, channels, rows.view(n, 1, height, 1), cols.view(n, 1, 1, width)]


def augment_batch(x: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """One training batch (N, C, H, W) flipped and translated as `spec` says, drawn from `generator`."""
    if spec.flip:
        x = flip(x, flip_mask(len(x), generator))
    if spec.translate:
        x = translate(x, translation_offsets(len(x), spec.translate, generator))
    return x


def mean_over_flip(predict, x: torch.Tensor) -> torch.Tensor:
    """Test-time flip averaging: the mean of predict(x) and of predict(x mirrored); callers average
    probabilities, not logits: what a prediction answers is a probability."""
    return (predict(x) + predict(x.flip(-1))) / 2
