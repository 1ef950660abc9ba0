"""The paper's ANN training recipe as data: :class:`TrainConfig`, one frozen dataclass whose
fields are the defaults, help texts and checks of ``snncal train``, and whose :meth:`~TrainConfig.resolve`
fills in the defaults that depend on the model and data set.

Recipe (Li et al. 2021): SGD momentum 0.9, lr 0.1 cosine, weight decay 5e-4 with BN (lr 0.005,
weight decay 1e-4 without BN), 300 CIFAR epochs; ImageNet: label smoothing 0.1, EMA 0.999,
weight decay 1e-4, 120 epochs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from snncal.core.config import check_float, check_int
from snncal.core.fields import help_field as _f

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """All settings of a training run; ``None`` means "the paper's default for this case".

    Defaults that depend on the model or data set are filled in by :meth:`resolve`.
    """

    arch: str = _f("resnet20_he", "model name (snncal.ann.models.list())")
    dataset: str = _f("cifar10", "cifar10, cifar100, imagenet or fashion_mnist")
    data_dir: str | None = _f(None, "data set root (see docs/training.md)")
    out_dir: str = _f("runs/train", "checkpoints, logs and resume state")
    epochs: int | None = _f(None, "default 300 (CIFAR, Fashion-MNIST) or 120 (ImageNet)")
    batch_size: int = _f(128, "global batch size, split over DDP processes")
    lr: float | None = _f(None, "default 0.1 with BN, 0.005 without; cosine decay per step")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float | None = _f(None, "default 5e-4 with BN, 1e-4 without BN or on ImageNet")
    label_smoothing: float | None = _f(None, "default 0.1 on ImageNet, else 0")
    ema_decay: float | None = _f(None, "EMA of weights; default 0.999 on ImageNet, else 0 (off)")
    warmup_epochs: int = _f(0, "linear learning-rate warm-up from lr/100 over N epochs before the cosine "
                            "decay (not in the paper's recipe; deep nets such as resnet56_he need 1)")
    width: float = _f(1.0, "channel multiplier of the zoo model")
    augment: str = _f("paper", "paper, basic (crop + flip) or none")
    workers: int = _f(0, "DataLoader worker processes")
    seed: int = _f(0, "seed of init, shuffling and augmentation")
    device: str = _f("auto", "auto, cpu, cuda, cuda:1, ...")
    amp: bool = _f(True, "bf16 autocast on CUDA")
    threads: int | None = _f(None, "torch.set_num_threads for the run")
    train_images: int | None = _f(None, "train on N training images drawn with the seed (default: all)")
    test_images: int | None = _f(None, "test on N test images evenly spaced through the split (default: all)")
    resume: bool = _f(True, "continue from OUT_DIR/state.pt when present")
    deterministic: bool = _f(False, "deterministic algorithms, no cuDNN benchmark")
    download: bool = _f(False, "let torchvision download CIFAR (needs a network)")
    progress: bool = _f(True, "tqdm progress bars")

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs", "threads", "train_images", "test_images"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), low=1)
        check_int("workers", self.workers, low=0)
        check_int("warmup_epochs", self.warmup_epochs, low=0)
        check_int("seed", self.seed, low=None)
        check_float("width", self.width, 0.0, math.inf, open_low=True)
        check_float("momentum", self.momentum, 0.0, 1.0)
        for name, high in (("lr", math.inf), ("weight_decay", math.inf), ("label_smoothing", 1.0),
                           ("ema_decay", 1.0)):
            if getattr(self, name) is not None:
                check_float(name, getattr(self, name), 0.0, high, open_low=name == "lr")
        if self.augment not in ("paper", "basic", "none"):
            raise ValueError(f"augment must be one of paper, basic, none, got {self.augment!r}")

    def resolve(self, has_bn: bool) -> TrainConfig:
        """A copy with every ``None`` default replaced by the recipe's value."""
        imagenet = self.dataset == "imagenet"
        return dataclasses.replace(
            self,
            epochs=self.epochs if self.epochs is not None else (120 if imagenet else 300),
            lr=self.lr if self.lr is not None else (0.1 if has_bn else 0.005),
            weight_decay=(
                self.weight_decay
                if self.weight_decay is not None
                else (5e-4 if has_bn and not imagenet else 1e-4)
            ),
            label_smoothing=(
                self.label_smoothing
                if self.label_smoothing is not None
                else (0.1 if imagenet else 0.0)
            ),
            ema_decay=(
                self.ema_decay if self.ema_decay is not None else (0.999 if imagenet else 0.0)
            ),
        )
