"""VGG-16 with average pooling, with or without batch norm (the paper's CIFAR/ImageNet VGG).

Without BN the network is regularised with ``Dropout(0.25)`` after every ReLU, as in the paper's
recipe (BN-free VGGs train with a small learning rate, 0.005).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from snncal.ann.models._registry import register_model
from snncal.ann.models.layers import scale_channels

__all__ = [
    "VGG",
    "vgg16",
    "vgg16_bn",
]

VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "A", 128, 128, "A", 256, 256, 256, "A", 512, 512, 512, "A", 512, 512, 512, "A",
)  # fmt: skip


class VGG(nn.Module):
    """features (conv-[BN]-ReLU[-Dropout], AvgPool2d(2)) -> global AvgPool -> 3 Linear layers."""

    def __init__(
        self,
        cfg: tuple[int | str, ...] = VGG16_CFG,
        num_classes: int = 10,
        width: float = 1.0,
        batch_norm: bool = True,
        in_channels: int = 3,
        hidden: int = 4096,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        drop = 0.0 if batch_norm else dropout
        for v in cfg:
            if v == "A":
                layers.append(nn.AvgPool2d(2, 2))
                continue
            c = scale_channels(int(v), width)
            layers.append(nn.Conv2d(prev, c, 3, 1, 1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.ReLU(inplace=True))
            if drop:
                layers.append(nn.Dropout(drop))
            prev = c
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        h = scale_channels(hidden, width)
        head: list[nn.Module] = [nn.Linear(prev, h), nn.ReLU(inplace=True)]
        head += [nn.Dropout(drop)] if drop else []
        head += [nn.Linear(h, h), nn.ReLU(inplace=True)]
        head += [nn.Dropout(drop)] if drop else []
        head += [nn.Linear(h, num_classes)]
        self.classifier = nn.Sequential(*head)
        # He (fan-in) init keeps the signal's scale through every synapse. Without BN, the common
        # N(0, 0.01) for the three linears shrinks the logits to ~1e-4 of the input or less and the net
        # stays at chance for epochs (measured: 3 epochs at 10.00 % at lr 0.005).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model
def vgg16(num_classes: int = 10, width: float = 1.0, **kw) -> VGG:
    """VGG-16 without BN (Dropout 0.25), AvgPool instead of MaxPool."""
    return VGG(VGG16_CFG, num_classes, width, batch_norm=False, **kw)


@register_model
def vgg16_bn(num_classes: int = 10, width: float = 1.0, **kw) -> VGG:
    """VGG-16 with BN, AvgPool instead of MaxPool."""
    return VGG(VGG16_CFG, num_classes, width, batch_norm=True, **kw)
