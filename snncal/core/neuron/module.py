"""The IF neuron module: the thin module that holds a neuron's buffers and calls the kernels."""

from __future__ import annotations

import torch
from torch import Tensor, fx, nn

from snncal.core.neuron.kernel import RESETS, if_count, if_scan

__all__ = ["IFNeuron", "is_neuron"]


class IFNeuron(nn.Module):
    """Integrate-and-fire neuron that replaces one ReLU of the ANN.

    State lives outside the module (the simulation engine passes the membrane potential in and out),
    so the module only holds named buffers: ``threshold`` (scalar or per channel, shaped to
    broadcast over ``[N, C, ...]``) and ``v0``, the initial membrane potential (scalar or
    element-wise, set by potential correction). ``step_bias``, a time-dependent bias, is ``None``
    (and not in the ``state_dict``) until a calibration step sets it: ``[K, ...]``, one current per
    step shaped like ``threshold``, added to the input at step ``t`` (``t < K``; later steps get
    the last entry), as in FTBC (Wu et al., ECCV 2024).

    Args:
        threshold: initial ``Vth``.
        reset: ``"subtract"`` or ``"zero"``.
        shift: add ``Vth / 2T`` to the input at every step (Deng & Gu 2021).
        ann_max: upper clip of the ANN activation it replaces (6 for ReLU6, ``None`` for ReLU).
    """

    def __init__(
        self,
        threshold: Tensor | float = 1.0,
        reset: str = "subtract",
        shift: bool = False,
        ann_max: float | None = None,
    ) -> None:
        super().__init__()
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float32).clone())
        self.register_buffer("v0", torch.zeros(()))
        self.register_buffer("step_bias", None)
        self.reset = reset
        self.shift = shift
        self.ann_max = ann_max

    def relu(self, x: Tensor) -> Tensor:
        """The ANN activation this neuron stands for."""
        return x.clamp(0, self.ann_max) if self.ann_max is not None else x.clamp_min(0)

    def init_state(self, x: Tensor) -> Tensor:
        """The membrane potential at t = 0 for one time step of input ``x`` ``[N, ...]``."""
        return (torch.zeros_like(x) + self.v0.to(x.dtype)).contiguous()

    def scan(
        self, x: Tensor, v: Tensor, steps: int, T: int, residual: Tensor | None = None, t0: int = 0
    ) -> tuple[Tensor, Tensor]:
        """Advance steps ``t0 .. t0 + steps - 1`` of a simulation of total length ``T``; see
        :func:`if_scan`."""
        bias = self.extra_current(t0, steps, T, v.dtype)
        return if_scan(x, v, self.threshold.to(v.dtype), steps, self.reset, bias, residual)

    def count(
        self, x: Tensor, v: Tensor, T: int, spikes: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """A whole simulation of length ``T`` from state ``v``, as calibration reads it: spike
        counts, final state and, with ``spikes``, the bool spike trains; see :func:`if_count`."""
        bias = self.extra_current(0, T, T, v.dtype)
        return if_count(x, v, self.threshold.to(v.dtype), T, reset=self.reset, bias=bias, spikes=spikes)

    # -- the extra current: the threshold shift and the time-dependent bias, in one place
    def shift_current(self, T: int, threshold: Tensor | None = None) -> Tensor | float:
        """The threshold shift's current at every step, ``Vth / 2T`` (0.0 without the shift);
        ``threshold`` replaces ``Vth`` (candidate thresholds, one more leading dimension)."""
        if not self.shift:
            return 0.0
        return (self.threshold if threshold is None else threshold) / (2 * T)

    def extra_current(self, t0: int, steps: int, T: int, dtype: torch.dtype) -> Tensor | float:
        """The extra input current of steps ``t0 .. t0 + steps - 1``: the threshold shift plus the
        time-dependent bias (0.0 without either), as :func:`if_scan`'s ``bias``."""
        bias = self.shift_current(T)
        if self.step_bias is not None:
            bias = bias + self.bias_at(t0, steps).to(dtype)
        return bias

    def effective_v0(self, T: int) -> Tensor:
        """The initial potential that, for a constant current over ``T`` steps, ends in the spike
        count the extra current gives: ``v0``, plus ``Vth / 2`` with the threshold shift, plus the
        sum of the time-dependent bias over the ``T`` steps."""
        v0 = self.v0
        if self.shift:
            v0 = v0 + self.threshold / 2
        if self.step_bias is not None:
            v0 = v0 + self.bias_at(0, T).sum(0)[0]
        return v0

    def bias_at(self, t0: int, steps: int) -> Tensor:
        """The time-dependent bias of steps ``t0 .. t0 + steps - 1`` as ``[steps, 1, ...]``, which
        broadcasts over ``[steps, N, ...]`` (zeros without one)."""
        if self.step_bias is None:
            return torch.zeros((steps, 1, *self.threshold.shape), device=self.threshold.device)
        t = torch.arange(t0, t0 + steps, device=self.step_bias.device).clamp_max(len(self.step_bias) - 1)
        return self.step_bias[t].unsqueeze(1)

    def forward(self, x: Tensor) -> Tensor:
        """Outside the simulation engine a neuron has no time axis; refuse instead of guessing."""
        raise RuntimeError(
            "IFNeuron has no stand-alone forward: run the network with SpikingNetwork.simulate"
        )

    def extra_repr(self) -> str:
        shape = tuple(self.threshold.shape)
        th = f"{self.threshold.item():.4g}" if not shape else f"per-channel{shape}"
        steps = "" if self.step_bias is None else f", step_bias={len(self.step_bias)} steps"
        return f"threshold={th}, reset={self.reset}, shift={self.shift}, ann_max={self.ann_max}{steps}"


def is_neuron(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Whether ``node`` of the spiking graph ``gm`` calls an :class:`IFNeuron`."""
    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), IFNeuron)
