"""The integrate-and-fire neuron: pure kernels over ``[T, N, ...]`` and a thin module holding buffers.

With reset by subtraction and zero initial potential, an IF neuron driven by a constant current ``x``
for ``T`` steps fires ``clip(floor(x * T / Vth), 0, T)`` spikes, so its rate times ``Vth`` is
``clip_floor(x)``: the function calibration compares against ``ReLU(x)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

RESETS = ("subtract", "zero")


def clip_floor(x: Tensor, threshold: Tensor | float, T: int, v0: Tensor | float = 0.0) -> Tensor:
    """Firing rate (times ``Vth``) of an IF neuron with constant input ``x`` over ``T`` steps.

    ``clip_floor(x) = clip(floor((x * T + v0) / Vth), 0, T) * Vth / T``.
    """
    return torch.clamp(torch.floor((x * T + v0) / threshold), 0, T) * (threshold / T)


def if_scan(
    x: Tensor,
    v: Tensor,
    threshold: Tensor,
    steps: int,
    reset: str = "subtract",
    bias: Tensor | float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Run an IF neuron for ``steps`` steps; charge, fire, reset.

    Args:
        x: input current, ``[steps, N, ...]``, or ``[N, ...]`` when it is the same at every step.
        v: membrane potential ``[N, ...]`` at the start, advanced in place (the caller owns the
            state; a copy per call would cost one more pass over it).
        threshold: ``Vth``, broadcastable to ``v``.
        steps: number of time steps.
        reset: ``"subtract"`` (v -= Vth on a spike) or ``"zero"`` (v = 0 on a spike).
        bias: extra current added at every step (Deng & Gu's threshold shift uses ``Vth / 2T``).

    Returns:
        Spikes scaled by ``Vth`` as ``[steps, N, ...]`` and the final potential (``v`` itself).
    """
    constant = x.dim() == v.dim()
    no_bias = isinstance(bias, float) and bias == 0.0
    if constant and not no_bias:
        x = x + bias
    spikes = torch.empty((steps, *v.shape), dtype=v.dtype, device=v.device)  # 0/1, scaled at the end
    for t in range(steps):
        v.add_(x if constant else x[t])
        if not (constant or no_bias):
            v.add_(bias)
        s = torch.ge(v, threshold, out=spikes[t])
        if reset == "subtract":
            v.addcmul_(s, threshold, value=-1)
        else:
            v.mul_(1 - s)
    return spikes.mul_(threshold), v


class IFNeuron(nn.Module):
    """Integrate-and-fire neuron that replaces one ReLU of the ANN.

    State lives outside the module (the simulation engine passes the membrane potential in and out),
    so the module only holds named buffers: ``threshold`` (scalar or per channel, shaped to
    broadcast over ``[N, C, ...]``) and ``v0``, the initial membrane potential (scalar or
    element-wise, set by potential correction).

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
        self.reset = reset
        self.shift = shift
        self.ann_max = ann_max

    def relu(self, x: Tensor) -> Tensor:
        """The ANN activation this neuron stands for."""
        return x.clamp(0, self.ann_max) if self.ann_max is not None else x.clamp_min(0)

    def init_state(self, x: Tensor) -> Tensor:
        """Membrane potential at t = 0 for one time step of input ``x`` ``[N, ...]``."""
        return (torch.zeros_like(x) + self.v0.to(x.dtype)).contiguous()

    def scan(self, x: Tensor, v: Tensor, steps: int, T: int) -> tuple[Tensor, Tensor]:
        """Advance ``steps`` steps of a simulation of total length ``T``; see :func:`if_scan`."""
        bias = self.threshold / (2 * T) if self.shift else 0.0
        return if_scan(x, v, self.threshold.to(v.dtype), steps, self.reset, bias)

    def forward(self, x: Tensor) -> Tensor:
        """Outside the simulation engine a neuron has no time axis; refuse instead of guessing."""
        raise RuntimeError(
            "IFNeuron has no stand-alone forward: run the network with SpikingNetwork.simulate"
        )

    def extra_repr(self) -> str:
        shape = tuple(self.threshold.shape)
        th = f"{self.threshold.item():.4g}" if not shape else f"per-channel{shape}"
        return f"threshold={th}, reset={self.reset}, shift={self.shift}, ann_max={self.ann_max}"
