"""A small CNN for CPU experiments and the quickstart."""

from __future__ import annotations

import torch
from torch import nn

from snncal.ann.models._registry import register_model
from snncal.ann.models.layers import scale_channels

__all__ = [
    "SmallCNN",
    "cnn_small",
]


class SmallCNN(nn.Module):
    """Three stride-2 conv-BN-ReLU blocks and a linear classifier (about 20k parameters).

    Sized for CPUs: it trains in about 10 s per Fashion-MNIST epoch on one core, and every layer
    after the first (which direct encoding runs once) costs about 0.3 MMAC per image and time
    step. 28x28 and 32x32 inputs both end as 4x4 maps.
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: float = 1.0,
        in_channels: int = 3,
        channels: tuple[int, ...] = (16, 32, 32),
        image_size: int = 32,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev, size = in_channels, image_size
        for c in channels:
            c = scale_channels(c, width)
            layers += [nn.Conv2d(prev, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            prev, size = c, (size + 1) // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(prev * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model
def cnn_small(num_classes: int = 10, width: float = 1.0, **kw) -> SmallCNN:
    """The quickstart's CNN: 3 stride-2 convs (16/32/32 channels) + a linear layer."""
    return SmallCNN(num_classes, width, **kw)
