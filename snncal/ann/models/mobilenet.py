"""MobileNet v1 (Howard et al. 2017) with ReLU, for ImageNet and CIFAR."""

from __future__ import annotations

import torch
import torch.nn as nn

from snncal.ann.models._registry import register_model
from snncal.ann.models.layers import scale_channels

__all__ = [
    "MobileNetV1",
    "mobilenet",
    "mobilenet_cifar",
]

# (output channels, stride) of the 13 depthwise-separable blocks.
MOBILENET_CFG: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip


def _conv_bn(in_ch: int, out_ch: int, k: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """conv3x3(32) -> 13 x (depthwise 3x3 + pointwise 1x1) -> global AvgPool -> Linear."""

    def __init__(
        self,
        num_classes: int = 1000,
        width: float = 1.0,
        first_stride: int = 2,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        c0 = scale_channels(32, width)
        layers: list[nn.Module] = [_conv_bn(in_channels, c0, 3, first_stride)]
        prev = c0
        for c, s in MOBILENET_CFG:
            c = scale_channels(c, width)
            layers.append(
                nn.Sequential(_conv_bn(prev, prev, 3, s, groups=prev), _conv_bn(prev, c, 1, 1))
            )
            prev = c
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model
def mobilenet(num_classes: int = 1000, width: float = 1.0, **kw) -> MobileNetV1:
    """MobileNet v1 for ImageNet (first conv stride 2)."""
    return MobileNetV1(num_classes, width, first_stride=2, **kw)


@register_model
def mobilenet_cifar(num_classes: int = 10, width: float = 1.0, **kw) -> MobileNetV1:
    """MobileNet v1 for 32x32 inputs (first conv stride 1)."""
    return MobileNetV1(num_classes, width, first_stride=1, **kw)
