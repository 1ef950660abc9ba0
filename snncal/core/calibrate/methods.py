"""The calibration step table and the methods built from it.

A *step* is one function ``step(layer, cfg)`` over one :class:`~snncal.core.calibrate.sweep.Layer`
of the sweep: it may set the layer's threshold, initial potential, neuron settings or the weights of
its conv/linear. A *method* is a named list of steps, run in that order on every layer, plus the
neuron settings it needs. ``register_step`` and ``register_method`` add new ones without touching
:func:`snncal.core.calibrate.calibrate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from snncal.core.calibrate import (
    balanced,
    bias,
    block,
    finetune,
    potential,
    rmp,
    shift,
    tbias,
    thresholds,
    weight,
)

if TYPE_CHECKING:
    from torch.utils.data import DataLoader, Dataset

    from snncal.core.calibrate.layer import Layer
    from snncal.core.config import ConvertConfig
    from snncal.core.engine import SpikingNetwork

__all__ = [
    "METHODS",
    "NETWORK_STEPS",
    "STEPS",
    "Method",
    "Step",
    "get_method",
    "register_method",
    "register_step",
]


@dataclass(frozen=True)
class Step:
    """A calibration step: ``run(layer, cfg)``; ``spikes``: it reads the SNN (the spike trains of
    the layers before), so the sweep must simulate every layer."""

    run: Callable[[Layer, ConvertConfig], None]
    spikes: bool


STEPS: dict[str, Step] = {  # in the order a '+'-joined list of steps runs in
    "threshold": Step(thresholds.threshold, spikes=False),
    "max": Step(thresholds.max_threshold, spikes=False),
    "percentile": Step(thresholds.percentile_threshold, spikes=False),
    "mmse": Step(thresholds.mmse_threshold, spikes=False),
    "shift": Step(shift.threshold_shift, spikes=False),
    "balanced": Step(balanced.balanced_threshold, spikes=True),
    "weight": Step(weight.weight_calibration, spikes=True),
    "weight_spikes": Step(weight.weight_calibration_spikes, spikes=True),
    "block": Step(block.block_reconstruction, spikes=True),
    "block_spikes": Step(block.block_reconstruction_spikes, spikes=True),
    "bias": Step(bias.bias_correction, spikes=True),
    "tbias": Step(tbias.time_bias_correction, spikes=True),
    "potential": Step(potential.potential_correction, spikes=True),
    "snn_max": Step(thresholds.snn_max, spikes=True),
    "snn_max_0.7": Step(thresholds.snn_max_07, spikes=True),
    "rmp_max": Step(rmp.rmp_threshold, spikes=True),
    "ema_max": Step(thresholds.ema_max_threshold, spikes=False),
}
THRESHOLD_STEPS = {"threshold", "max", "percentile", "mmse", "snn_max", "snn_max_0.7", "rmp_max", "ema_max"}

# Steps over the whole network after the sweep: (snn, train_data or None, cfg) -> report entries;
# ``train_data`` is the labelled training set given to ``snncal.convert`` (not the calibration set).
NETWORK_STEPS: dict[str, Callable[[SpikingNetwork, Dataset | DataLoader | None, ConvertConfig], dict]] = {
    "hybrid": finetune.hybrid_finetune,
}


@dataclass(frozen=True)
class Method:
    """A named list of steps and the neuron settings it needs (``None``: the configuration's).

    Attributes:
        name: what ``snncal.convert(method=...)`` calls it.
        steps: step names of :data:`STEPS`, run in this order on each layer.
        reset: ``"subtract"`` or ``"zero"``, if the method fixes it.
        per_channel: one threshold per channel (``True``) or per layer (``False``), if fixed.
        encoding: the input encoding, if the method fixes it.
        convert_avgpool: whether average pools become depthwise conv + IF neurons (Li et al.'s
            "Convert AP"), if the method fixes it; the baselines pool spikes linearly, as their
            sources did.
        after: steps of :data:`NETWORK_STEPS` run on the whole network after the sweep.
    """

    name: str
    steps: tuple[str, ...]
    reset: str | None = None
    per_channel: bool | None = None
    encoding: str | None = None
    after: tuple[str, ...] = ()
    convert_avgpool: bool | None = None

    @property
    def reads_spikes(self) -> bool:
        """Whether any step reads the SNN's spike trains."""
        return any(STEPS[s].spikes for s in self.steps)

    def configure(self, cfg: ConvertConfig) -> ConvertConfig:
        """``cfg`` with the neuron settings this method fixes."""
        fixed = {"reset": self.reset, "per_channel": self.per_channel, "encoding": self.encoding,
                 "convert_avgpool": self.convert_avgpool}
        return replace(cfg, **{k: v for k, v in fixed.items() if v is not None})


METHODS: dict[str, Method] = {}


def register_step(name: str, run: Callable[[Layer, ConvertConfig], None], spikes: bool) -> None:
    """Add the step ``name`` to :data:`STEPS` (``spikes``: it reads the SNN's spike trains)."""
    if name in STEPS:
        raise ValueError(f"calibration step {name!r} exists already")
    STEPS[name] = Step(run, spikes)


def register_method(
    name: str,
    steps: tuple[str, ...],
    reset: str | None = None,
    per_channel: bool | None = None,
    encoding: str | None = None,
    after: tuple[str, ...] = (),
    convert_avgpool: bool | None = None,
) -> Method:
    """Make ``name`` a method of ``snncal.convert(method=name)``: ``steps`` run in this order on
    every layer, then the network steps ``after``; the neuron and pooling settings given are fixed."""
    unknown = [s for s in steps if s not in STEPS] + [s for s in after if s not in NETWORK_STEPS]
    if unknown:
        raise ValueError(f"unknown calibration steps {unknown}; known: {list(STEPS)} and, after "
                         f"the sweep, {list(NETWORK_STEPS)}")
    METHODS[name] = Method(name, tuple(steps), reset, per_channel, encoding, tuple(after), convert_avgpool)
    return METHODS[name]


def get_method(name: str) -> Method:
    """A registered method, or a ``+``-joined list of steps (e.g. ``"bias+potential"``), which
    runs in table order after the configured threshold rule unless it names a rule itself."""
    if name in METHODS:
        return METHODS[name]
    parts = set(name.split("+"))
    if not parts <= set(STEPS):
        raise ValueError(
            f"unknown method {name!r}: use one of {sorted(METHODS)} or '+'-joined steps of {list(STEPS)}"
        )
    if not parts & THRESHOLD_STEPS:
        parts.add("threshold")
    return Method(name, tuple(s for s in STEPS if s in parts))


register_method("none", ("threshold",))
register_method("light", ("threshold", "bias"))
register_method("advanced", ("threshold", "weight", "bias", "potential"))
# Low latency (docs/methods.md, "Low-latency steps and methods"): a bias per channel and time
# step instead of one per channel.
register_method("light+", ("threshold", "tbias", "potential"))
register_method("advanced+", ("threshold", "weight", "tbias", "potential"))
# The baselines of the paper's Table 9, with their sources' settings (docs/methods.md): one
# threshold per layer, and average pools left linear on the spike trains, as the sources had them.
register_method("spike_norm", ("snn_max",), reset="zero", per_channel=False, encoding="poisson",
                convert_avgpool=False)
register_method("rmp", ("rmp_max",), reset="subtract", per_channel=False, encoding="poisson",
                convert_avgpool=False)
register_method("tsc", ("rmp_max",), reset="subtract", per_channel=False, encoding="switch",
                convert_avgpool=False)
register_method("opt", ("ema_max", "shift"), reset="subtract", per_channel=False, encoding="direct",
                convert_avgpool=False)
register_method("hybrid", ("snn_max_0.7",), reset="subtract", per_channel=False, encoding="poisson",
                after=("hybrid",), convert_avgpool=False)
