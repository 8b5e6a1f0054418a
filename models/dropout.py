"""Dropout in its two textbook forms: inverted (scale at train time) and vanilla (scale at test time)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("inverted", "vanilla")


class Dropout(nn.Module):
    """Drop each unit with probability p in training; `mode` decides where the 1/p_keep scaling lives."""

    def __init__(self, p: float = 0.5, mode: str = "inverted"):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        if mode not in MODES:
            raise ValueError(f"dropout mode must be one of {MODES}, got {mode!r}")
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "inverted":
            # Kept units are scaled by 1/(1-p) while training, so evaluation is the identity.
            return F.dropout(x, self.p, self.training)
        keep = 1.0 - self.p
        if self.training:
            # Kept units are left as they are; the expected activation shrinks to keep * x ...
            return x * torch.empty_like(x).bernoulli_(keep)
        # ... so at test time every unit is scaled by keep to match that expectation.
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"
