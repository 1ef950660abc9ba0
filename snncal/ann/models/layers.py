"""Small building blocks shared by the zoo."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn as nn

__all__ = [
    "Normalize",
    "randomize_bn",
    "scale_channels",
    "with_normalize",
]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` with constant buffers; fx-traceable.

    Put first in a model so the data set's normalisation is part of the checkpoint and the
    model takes raw ``[0, 1]`` images.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        m = [round(v, 4) for v in self.mean.flatten().tolist()]
        s = [round(v, 4) for v in self.std.flatten().tolist()]
        return f"mean={m}, std={s}"


def with_normalize(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Sequential:
    """``Sequential(normalize=Normalize(mean, std), net=model)``."""
    return nn.Sequential(OrderedDict(normalize=Normalize(mean, std), net=model))


def scale_channels(channels: int, width: float) -> int:
    """Channel count after a width multiplier (at least 1)."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(1, round(channels * width))


def randomize_bn(model: nn.Module) -> nn.Module:
    """Give ``model``'s BatchNorms non-trivial statistics and affine parameters, and put it in eval
    mode: a random-weight model then tests BN folding for real (tests, benchmarks)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.3)
    return model.eval()
