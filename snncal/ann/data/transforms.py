"""The paper's transforms. Images end as float ``[0, 1]``; normalisation lives in the model.

CIFAR train ("paper"): RandomCrop(32, padding=4) + horizontal flip + AutoAugment (CIFAR-10 policy)
+ Cutout(16). "basic": crop + flip only (short CPU runs). ImageNet train: RandomResizedCrop(224) +
flip + ColorJitter(0.2, 0.2, 0.2, 0.1); test: Resize(256) + CenterCrop(224).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from torchvision.transforms import v2

__all__ = [
    "AUGMENTATIONS",
    "Cutout",
    "build_transform",
]

AUGMENTATIONS = ("paper", "basic", "none")


class Cutout(nn.Module):
    """Zero one ``length x length`` square at a random centre (DeVries & Taylor 2017).

    The square may extend past the border, as in the original. Works on ``[C, H, W]`` tensors.
    """

    def __init__(self, length: int = 16) -> None:
        super().__init__()
        self.length = length

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        cy = int(torch.randint(h, ()))
        cx = int(torch.randint(w, ()))
        y0, y1 = max(0, cy - self.length // 2), min(h, cy + self.length // 2)
        x0, x1 = max(0, cx - self.length // 2), min(w, cx + self.length // 2)
        img = img.clone()
        img[..., y0:y1, x0:x1] = 0
        return img


_TO_FLOAT = v2.ToDtype(torch.float32, scale=True)


def _small_image(size: int, pad: int, split: str, augment: str, policy) -> Callable:
    """Transforms for uint8 ``[C, H, W]`` tensors of CIFAR-like data sets."""
    if split != "train" or augment == "none":
        return _TO_FLOAT
    t: list[nn.Module] = [v2.RandomCrop(size, padding=pad), v2.RandomHorizontalFlip()]
    if augment == "paper":
        if policy is not None:
            t.append(v2.AutoAugment(policy))
        t += [_TO_FLOAT, Cutout(size // 2)]
    else:
        t.append(_TO_FLOAT)
    return v2.Compose(t)


def build_transform(dataset: str, split: str = "train", augment: str = "paper") -> Callable:
    """Transform of a data set ("cifar10", "cifar100", "fashion_mnist", "imagenet") for a split."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; known: {', '.join(AUGMENTATIONS)}")
    if dataset in ("cifar10", "cifar100"):
        return _small_image(32, 4, split, augment, v2.AutoAugmentPolicy.CIFAR10)
    if dataset == "fashion_mnist":
        # No AutoAugment policy for greyscale clothing; "paper" = crop + flip + Cutout.
        return _small_image(28, 2, split, augment, None)
    if dataset == "imagenet":
        if split == "train" and augment != "none":
            t: list = [v2.RandomResizedCrop(224), v2.RandomHorizontalFlip()]
            if augment == "paper":
                t.append(v2.ColorJitter(0.2, 0.2, 0.2, 0.1))
            return v2.Compose([v2.PILToTensor(), *t, _TO_FLOAT])
        return v2.Compose([v2.PILToTensor(), v2.Resize(256), v2.CenterCrop(224), _TO_FLOAT])
    raise ValueError(f"no transforms for data set {dataset!r}")
