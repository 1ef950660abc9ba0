"""Every knob of conversion and calibration, with its default and its help in one place."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from snncal.core.device import AMP
from snncal.core.encoding import ENCODINGS
from snncal.core.fields import help_field as _f
from snncal.core.neuron import RESETS
from snncal.core.observers import RULES

__all__ = [
    "ConvertConfig",
    "check_float",
    "check_int",
    "make_config",
]


@dataclass(frozen=True)
class ConvertConfig:
    """Settings of a conversion; each field's ``metadata["help"]`` says what it does.

    Invalid values raise a ValueError when the config is made, before any work starts.
    """

    T: int = _f(32, "simulation length the thresholds and calibration are tuned for")
    method: str = _f("none", "calibration method: none, light, advanced, a registered baseline, or "
                     "'+'-joined steps such as bias+potential (snncal.core.calibrate.METHODS)")
    threshold: str = _f("mmse", "threshold rule of the methods that use the configured one: max, "
                        "percentile or mmse (the paper's ClipFloor MSE search)")
    percentile: float = _f(99.99, "percentile (0-100] for threshold=percentile")
    per_channel: bool = _f(True, "one threshold per channel instead of one per layer (the paper); "
                           "+0.6 to +2.1 points after light calibration on CIFAR-10 (docs/methods.md)")
    convert_avgpool: bool = _f(True, "average pools of spikes become depthwise conv + IF neurons (the "
                               "paper's 'Convert AP'); off keeps them linear ops on spike trains")
    maxpool_to_avgpool: bool = _f(False, "replace max pooling by average pooling (changes the ANN)")
    reset: str = _f("subtract", "reset by subtraction or to zero (methods may fix it)")
    encoding: str = _f("direct", "input encoding: direct (a constant current), poisson or switch (TSC)")
    num_images: int = _f(1024, "calibration images drawn from the calibration data")
    batch_size: int = _f(128, "images per ANN pass while calibrating")
    seed: int = _f(0, "draws the calibration images and seeds calibration: same seed, same network")
    max_batch: int | None = _f(None, "largest time-folded batch (steps x images) of the engine and the "
                               "calibration sweep; it bounds memory whatever T is. None: by the "
                               "device, 64 on a CPU, 256-2048 on CUDA by its memory (2048 from 80 GB)")
    weight_iters: int = _f(100, "Adam iterations of weight calibration per layer")
    weight_lr: float = _f(1e-3, "learning rate of weight calibration (cosine-decayed)")
    weight_batch: int = _f(32, "minibatch of calibration images in weight calibration (the "
                           "paper's code's 32)")
    hybrid_epochs: int = _f(2, "epochs of hybrid fine-tuning (method hybrid) over the training set "
                            "(train_data; the authors: about 20), 0 skips it")
    hybrid_batch: int = _f(64, "minibatch of training images in hybrid fine-tuning at T <= 32, "
                           "fewer beyond (the authors' 64)")
    hybrid_images: int | None = _f(None, "training images per epoch of hybrid fine-tuning, a fresh "
                                   "seeded draw each epoch (None: the whole training set)")
    hybrid_lr: float = _f(1e-4, "initial Adam learning rate of hybrid fine-tuning (the authors'), "
                          "divided by 5 at 60, 80 and 90 % of the epochs")
    cache_gb: float = _f(4.0, "memory for what the calibration sweep keeps between passes: spike "
                         "trains (spilled to a temporary folder beyond it), then each layer's input "
                         "current (computed again beyond it)")
    amp: str = _f("off", "mixed precision of the simulation's stateless ops (conv, linear): off, "
                  "bfloat16 or float16 autocast; potentials and neurons stay float32; calibration "
                  "runs in float32 (unmeasured on GPUs: off by default)")

    def __post_init__(self) -> None:
        choices = (("threshold", RULES), ("reset", RESETS), ("encoding", ENCODINGS), ("amp", tuple(AMP)))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"method must be a method name, got {self.method!r}")
        for name in ("T", "num_images", "batch_size", "weight_batch", "hybrid_batch"):
            check_int(name, getattr(self, name), low=1)
        for name in ("max_batch", "hybrid_images"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), low=1)
        check_int("weight_iters", self.weight_iters, low=0)
        check_int("hybrid_epochs", self.hybrid_epochs, low=0)
        check_int("seed", self.seed, low=None)
        check_float("percentile", self.percentile, 0.0, 100.0, open_low=True)
        check_float("weight_lr", self.weight_lr, 0.0, math.inf, open_low=True)
        check_float("hybrid_lr", self.hybrid_lr, 0.0, math.inf, open_low=True)
        check_float("cache_gb", self.cache_gb, 0.0, math.inf)
        for name in ("per_channel", "convert_avgpool", "maxpool_to_avgpool"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        """Plain-data view, for results files."""
        return asdict(self)


def check_int(name: str, value: Any, low: int | None) -> None:
    """A ValueError unless ``value`` is an integer (not a bool) of at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def check_float(name: str, value: Any, low: float, high: float, open_low: bool = False) -> None:
    """A ValueError unless ``value`` is a finite number in ``[low, high]`` (``(low, high]``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or value > high or (open_low and value == low):
        bounds = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise ValueError(f"{name} must be a number in {bounds}, got {value!r}")


def make_config(config: ConvertConfig | None = None, **overrides: Any) -> ConvertConfig:
    """``config`` (or the defaults) with ``overrides``; unknown names fail with the known ones."""
    known = {f.name for f in fields(ConvertConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown conversion options {unknown}; known: {sorted(known)}")
    return replace(config or ConvertConfig(), **overrides)
