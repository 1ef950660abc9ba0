"""The integrate-and-fire neuron: pure kernels over ``[T, N, ...]`` and a thin module holding buffers.

With reset by subtraction and zero initial potential, an IF neuron driven by a constant current ``x``
for ``T`` steps fires ``clip(floor(x * T / Vth), 0, T)`` spikes, so its rate times ``Vth`` is
``clip_floor(x)``: the function calibration compares against ``ReLU(x)``.
"""

from __future__ import annotations

import logging
import os
import warnings

import torch
from torch import Tensor, nn

RESETS = ("subtract", "zero")
FUSE_MIN_NUMEL = 1 << 17  # below this, the eager ops cost less than a compiled call (~25 us)


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
    residual: Tensor | None = None,
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
        residual: a second input current shaped like ``x`` (``[steps, N, ...]`` or ``[N, ...]``),
            added to it: a residual add feeding the neuron, which the compiled step sums in
            registers instead of writing ``x + residual`` out.

    Returns:
        Spikes scaled by ``Vth`` as ``[steps, N, ...]`` and the final potential (``v`` itself).
    """
    no_bias = isinstance(bias, float) and bias == 0.0
    if residual is not None and (not no_bias or residual.requires_grad):
        x, residual = x + residual, None  # the eager order, (x + residual) + bias
    if not no_bias:
        x = x + bias
    step = _fused_step(x, v)
    if step is not None:
        spikes = _scan_fused(step, x, residual, v, threshold, steps, reset)
        if spikes is not None:
            return spikes, v
    if residual is not None:
        x = x + residual
    constant = x.dim() == v.dim()
    spikes = torch.empty((steps, *v.shape), dtype=v.dtype, device=v.device)  # 0/1, scaled at the end
    for t in range(steps):
        v.add_(x if constant else x[t])
        s = torch.ge(v, threshold, out=spikes[t])
        if reset == "subtract":
            v.addcmul_(s, threshold, value=-1)
        else:
            v.mul_(1 - s)
    return spikes.mul_(threshold), v


def _if_step(
    v: Tensor, x: Tensor, residual: Tensor | None, threshold: Tensor, out: Tensor, subtract: bool
) -> None:
    """One step of :func:`if_scan`, written for torch.compile to fuse into a single pass that reads
    ``v, x`` and writes ``v`` and ``out`` (spikes times ``Vth``): as eager ops it would be slower
    than the loop in :func:`if_scan`, compiled it costs what the ANN's BN + ReLU cost."""
    v.add_(x if residual is None else x + residual)
    s = v >= threshold
    torch.mul(s, threshold, out=out)
    if subtract:
        v.sub_(out)
    else:
        v.masked_fill_(s, 0.0)


_compiled: dict[str, object] = {}  # "step" -> compiled _if_step; None once compiling failed here


def _fused_step(x: Tensor, v: Tensor):
    """The compiled step for large, gradient-free tensors, or ``None`` for eager ops
    (``SNNCAL_COMPILE=0``, or torch.compile failed here: no C++ compiler, no Triton)."""
    if (
        v.numel() < FUSE_MIN_NUMEL
        or x.requires_grad
        or v.requires_grad
        or os.environ.get("SNNCAL_COMPILE", "1") == "0"
    ):
        return None
    if "step" not in _compiled:
        # a CPU-only torch warns "No CUDA runtime is found" when inductor builds its C++ kernel
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        # one graph per dtype, device, rank and residual layout: a program that simulates several
        # networks needs more than dynamo's default of 8 before it would stop compiling
        cfg = torch._dynamo.config
        cfg.recompile_limit = max(cfg.recompile_limit, 64)
        _compiled["step"] = torch.compile(_if_step, fullgraph=True)
    return _compiled["step"]


def _scan_fused(
    step, x: Tensor, residual: Tensor | None, v: Tensor, threshold: Tensor, steps: int, reset: str
) -> Tensor | None:
    """:func:`if_scan` by the compiled step; ``None`` (``v`` untouched) if it cannot compile here."""
    spikes = torch.empty((steps, *v.shape), dtype=v.dtype, device=v.device)
    x_per_step = x.dim() > v.dim()
    r_per_step = residual is not None and residual.dim() > v.dim()
    subtract = reset == "subtract"
    for t in range(steps):
        xt = x[t] if x_per_step else x
        rt = residual[t] if r_per_step else residual
        try:
            step(v, xt, rt, threshold, spikes[t], subtract)
        except Exception as err:  # any backend failure (no C++ compiler, no Triton): fall back
            if t > 0:  # compiling happens at the first step, before v is touched
                raise
            warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); IF neurons run "
                          "as eager ops from now on, which is slower", stacklevel=3)
            _compiled["step"] = None
            return None
    return spikes


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

    def scan(
        self, x: Tensor, v: Tensor, steps: int, T: int, residual: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Advance ``steps`` steps of a simulation of total length ``T``; see :func:`if_scan`."""
        bias = self.threshold / (2 * T) if self.shift else 0.0
        return if_scan(x, v, self.threshold.to(v.dtype), steps, self.reset, bias, residual)

    def forward(self, x: Tensor) -> Tensor:
        """Outside the simulation engine a neuron has no time axis; refuse instead of guessing."""
        raise RuntimeError(
            "IFNeuron has no stand-alone forward: run the network with SpikingNetwork.simulate"
        )

    def extra_repr(self) -> str:
        shape = tuple(self.threshold.shape)
        th = f"{self.threshold.item():.4g}" if not shape else f"per-channel{shape}"
        return f"threshold={th}, reset={self.reset}, shift={self.shift}, ann_max={self.ann_max}"
