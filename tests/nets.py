"""Tiny models shared by the tests: every construct the converter must handle."""

import torch
import torch.nn.functional as F
from torch import nn

from snncal.ann.models import randomize_bn  # noqa: F401  (the tests import it from here)


class OneLayer(nn.Module):
    """One conv + ReLU feeding a linear head: the smallest network with one IF layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).flatten(1))


class Mixed(nn.Module):
    """BN, inplace module ReLU, functional ReLU, torch.relu, residual +, concat, slicing, pad, pools."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c3 = nn.Conv2d(16, 8, 3, padding=1, bias=False)
        self.c4 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.relu(self.b1(self.c1(x)))
        y = F.relu(self.b2(self.c2(x)))
        y = torch.relu(y + x)
        z = self.relu(self.c3(torch.cat([y, x], 1)))
        z = self.pool(z)
        s = F.pad(z[:, :, ::2, ::2], (0, 0, 0, 0, 4, 4))  # option-A shortcut: 8 -> 16 channels
        z = F.relu(self.c4(z) + s)
        z = self.head(z)
        return self.fc(self.drop(z.view(z.size(0), -1)))


class Plain(nn.Module):
    """conv-bn-relu x2 + linear: the smallest realistic CNN."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
        )
        self.fc = nn.Linear(8 * 4 * 4, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class Lambda(nn.Module):
    """A module that calls a function: how many public CIFAR ResNets write their shortcut."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class _OptionABlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:  # option A: subsample, then zero-pad the new channels
            extra = (cout - cin) // 2
            self.shortcut = Lambda(
                lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, extra, extra), "constant", 0)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class OptionAResNet(nn.Module):
    """A CIFAR ResNet written the way third-party ones often are: option-A shortcuts in a Lambda
    module and a global pool whose window is the feature map's size (``x.size()[3]``)."""

    def __init__(self, classes: int = 10, width: int = 4) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)
        self.block1 = _OptionABlock(width, width, 1)
        self.block2 = _OptionABlock(width, 2 * width, 2)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        out = F.relu(self.bn(self.conv(x)))
        out = self.block2(self.block1(out))
        out = F.avg_pool2d(out, out.size()[3])
        return self.fc(out.view(out.size(0), -1))
