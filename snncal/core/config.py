"""Every knob of conversion and calibration, with its default in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from snncal.core import observers as obs
from snncal.core.engine import ENCODINGS, MAX_BATCH
from snncal.core.neuron import RESETS

__all__ = ["ConvertConfig", "make_config"]


@dataclass(frozen=True)
class ConvertConfig:
    """Every knob of conversion and calibration, with its default in one place.

    Attributes:
        T: simulation length the thresholds and calibration are tuned for.
        threshold: ``"max"``, ``"percentile"`` or ``"mmse"`` (the paper's ClipFloor MSE search).
        percentile: percentile (0-100) for ``threshold="percentile"``.
        per_channel: one threshold per channel (default; +0.6 to +2.1 points over per-layer after
            light calibration on CIFAR-10, docs/methods.md) instead of one per layer (the paper).
        method: calibration pipeline, a name in ``snncal.core.calibrate.METHODS``
            (``"none"``, ``"light"``, ``"advanced"``, ...).
        convert_avgpool: average pools of spikes become depthwise conv + IF neurons (the paper's
            "Convert AP"); ``False`` keeps them linear, one quantisation step less per pool, which
            after advanced calibration at T = 16 lost 0.8-1.7 points less (docs/results.md).
        maxpool_to_avgpool: replace max pooling by average pooling (changes the ANN).
        reset: ``"subtract"`` or ``"zero"``.
        shift: Deng & Gu's threshold shift, ``Vth / 2T`` added to the input at every step.
        encoding: ``"direct"`` (constant current) or ``"poisson"``.
        num_images: calibration images taken from ``calib_data``.
        batch_size: batch size for observing and calibrating.
        seed: draws the calibration images (when ``calib_data`` is a Dataset or a tensor) and seeds
            calibration; the same seed gives the same network.
        max_batch: largest time-folded batch ``steps * N`` (simulation) or ``T * images``
            (calibration): it bounds memory whatever ``T`` is. Small batches keep CPU caches warm
            (64, one step of a batch of 64, is fastest on a 2-core CPU); on a GPU use thousands.
        weight_iters: Adam iterations of weight calibration per layer.
        weight_lr: its learning rate (cosine-decayed).
        weight_batch: its minibatch of calibration images.
        cache_gb: memory for the bit-packed spike trains of the calibration sweep; beyond it
            they are spilled to a temporary directory.
    """

    T: int = 32
    threshold: str = "mmse"
    percentile: float = 99.99
    per_channel: bool = True
    method: str = "none"
    convert_avgpool: bool = True
    maxpool_to_avgpool: bool = False
    reset: str = "subtract"
    shift: bool = False
    encoding: str = "direct"
    num_images: int = 1024
    batch_size: int = 128
    seed: int = 0
    max_batch: int = MAX_BATCH
    weight_iters: int = 300
    weight_lr: float = 1e-4
    weight_batch: int = 64
    cache_gb: float = 2.0

    def __post_init__(self) -> None:
        checks = {
            "threshold": (self.threshold, obs.METHODS),
            "reset": (self.reset, RESETS),
            "encoding": (self.encoding, ENCODINGS),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.T < 1:
            raise ValueError(f"T must be >= 1, got {self.T}")

    def to_dict(self) -> dict:
        """Plain-data view, for results files."""
        return asdict(self)


def make_config(config: ConvertConfig | None = None, **overrides) -> ConvertConfig:
    """``config`` (or the defaults) with ``overrides``; unknown names fail with the known ones."""
    known = {f.name for f in fields(ConvertConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown conversion options {unknown}; known: {sorted(known)}")
    return replace(config or ConvertConfig(), **overrides)
