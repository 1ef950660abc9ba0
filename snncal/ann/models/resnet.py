"""ResNets: He et al.'s CIFAR ResNets, the conversion papers' ResNet-20 (with BN, and without as
their baselines had it) and a deep-stem ResNet-34.

All blocks use ``nn.ReLU`` modules and plain ``out + identity`` adds, so the core sees residuals as
ordinary graph nodes. Downsampling shortcuts are a 1x1 conv + BN projection by default
(``shortcut="conv"``); ``shortcut="pad"`` gives He et al.'s option A (stride-2 slicing plus zero
channel padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from snncal.ann.models._registry import register_model
from snncal.ann.models.layers import scale_channels

__all__ = [
    "BasicBlock",
    "NoBNBlock",
    "NoBNResNet",
    "PadShortcut",
    "ResNet",
    "resnet20",
    "resnet20_he",
    "resnet20_nobn",
    "resnet32_he",
    "resnet34",
    "resnet56_he",
]


class PadShortcut(nn.Module):
    """Option-A shortcut: ``x[:, :, ::s, ::s]`` then zero-pad the channel dimension."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_ch - in_ch
        if self.extra < 0:
            raise ValueError("option-A shortcut cannot reduce channels")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        lo = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, lo, self.extra - lo))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, + shortcut, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, shortcut: str = "conv") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu2 = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            if shortcut == "conv":
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
                )
            elif shortcut == "pad":
                self.downsample = PadShortcut(in_ch, out_ch, stride)
            else:
                raise ValueError(f"shortcut must be 'conv' or 'pad', got {shortcut!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.downsample(x))


def _stem(in_channels: int, channels: Sequence[int], first_stride: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    prev = in_channels
    for i, c in enumerate(channels):
        stride = first_stride if i == 0 else 1
        layers += [nn.Conv2d(prev, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
        prev = c
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """Generic ResNet of basic blocks: stem -> stages -> (global) AvgPool -> Linear.

    Args:
        stem_channels: output channels of each 3x3 stem conv (one entry per conv).
        stage_channels: output channels of each stage; stage i > 0 downsamples by 2.
        blocks: number of basic blocks per stage.
        stem_stride: stride of the first stem conv.
        stem_pool: add a 3x3 stride-2 AvgPool after the stem (ImageNet; replaces the MaxPool).
    """

    def __init__(
        self,
        stem_channels: Sequence[int],
        stage_channels: Sequence[int],
        blocks: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        stem_stride: int = 1,
        stem_pool: bool = False,
        shortcut: str = "conv",
    ) -> None:
        super().__init__()
        self.stem = _stem(in_channels, stem_channels, stem_stride)
        self.pool = nn.AvgPool2d(3, 2, 1) if stem_pool else nn.Identity()
        stages = []
        prev = stem_channels[-1]
        for i, (c, n) in enumerate(zip(stage_channels, blocks, strict=True)):
            layer = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layer.append(BasicBlock(prev, c, stride, shortcut))
                prev = c
            stages.append(nn.Sequential(*layer))
        self.layers = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))
        x = self.layers(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _he_cifar(depth: int, num_classes: int, width: float, **kw) -> ResNet:
    if (depth - 2) % 6:
        raise ValueError(f"He CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    ch = [scale_channels(c, width) for c in (16, 32, 64)]
    return ResNet([ch[0]], ch, [n] * 3, num_classes=num_classes, **kw)


@register_model
def resnet20_he(num_classes: int = 10, width: float = 1.0, **kw) -> ResNet:
    """He et al. (2016) CIFAR ResNet-20: 16/32/64 channels, 3 blocks per stage."""
    return _he_cifar(20, num_classes, width, **kw)


@register_model
def resnet32_he(num_classes: int = 10, width: float = 1.0, **kw) -> ResNet:
    """He et al. (2016) CIFAR ResNet-32: 16/32/64 channels, 5 blocks per stage."""
    return _he_cifar(32, num_classes, width, **kw)


@register_model
def resnet56_he(num_classes: int = 10, width: float = 1.0, **kw) -> ResNet:
    """He et al. (2016) CIFAR ResNet-56: 16/32/64 channels, 9 blocks per stage."""
    return _he_cifar(56, num_classes, width, **kw)


@register_model
def resnet20(num_classes: int = 10, width: float = 1.0, **kw) -> ResNet:
    """ResNet-20 of the conversion papers: 3x3 stem (64), stages 64/128/256, AvgPool head."""
    ch = [scale_channels(c, width) for c in (64, 128, 256)]
    return ResNet([ch[0]], ch, [3, 3, 3], num_classes=num_classes, **kw)


@register_model
def resnet34(num_classes: int = 1000, width: float = 1.0, **kw) -> ResNet:
    """ImageNet ResNet-34 with a deep stem (three 3x3 convs, 32/32/64) and AvgPool for MaxPool."""
    stem = [scale_channels(c, width) for c in (32, 32, 64)]
    ch = [scale_channels(c, width) for c in (64, 128, 256, 512)]
    return ResNet(
        stem, ch, [3, 4, 6, 3], num_classes=num_classes, stem_stride=2, stem_pool=True, **kw
    )


class NoBNBlock(nn.Module):
    """The conversion papers' basic block: conv3x3-ReLU-Dropout-conv3x3, + shortcut, ReLU; no BN,
    no biases; a bias-free 1x1 conv shortcut where the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.relu1 = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.relu2 = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.drop(self.relu1(self.conv1(x))))
        return self.relu2(out + self.downsample(x))


class NoBNResNet(nn.Module):
    """Sengupta et al. (2019) / Rathi et al. (2020)'s ResNet-20 for CIFAR (their ``ResNet20``):
    three 3x3 "pre-process" convs of 64 channels (ReLU, Dropout after the first two), AvgPool 2,
    then two :class:`NoBNBlock` per stage of 64/128/256/512 channels (stride 2 from the second
    stage), and a bias-free linear classifier on the flattened 512 x 2 x 2 map (32 x 32 input);
    no BN and no bias anywhere, as the sources converted it."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 3,
                 dropout: float = 0.2, input_size: int = 32) -> None:
        super().__init__()
        c = scale_channels(64, width)
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.Conv2d(in_channels if i == 0 else c, c, 3, 1, 1, bias=False), nn.ReLU(True)]
            layers += [nn.Dropout(dropout)] if i < 2 else [nn.AvgPool2d(2)]
        self.pre_process = nn.Sequential(*layers)
        blocks, prev = [], c
        for i, ch in enumerate(scale_channels(k, width) for k in (64, 128, 256, 512)):
            for j in range(2):
                blocks.append(NoBNBlock(prev, ch, 2 if (i > 0 and j == 0) else 1, dropout))
                prev = ch
        self.layers = nn.Sequential(*blocks)
        side = input_size // 16
        self.classifier = nn.Linear(prev * side * side, num_classes, bias=False)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.layers(self.pre_process(x)), 1))


@register_model
def resnet20_nobn(num_classes: int = 10, width: float = 1.0, **kw) -> NoBNResNet:
    """The ResNet-20 of Sengupta et al. and Rathi et al. (the conversion baselines' network):
    3 pre-process convs (64), stages 64/128/256/512 of 2 blocks, no BN, no biases."""
    return NoBNResNet(num_classes, width, **kw)
