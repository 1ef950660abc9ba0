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
from torch import Tensor, fx, nn

__all__ = [
    "RESETS",
    "IFNeuron",
    "clip_floor",
    "if_count",
    "if_scan",
    "is_neuron",
    "surrogate_scan",
]

RESETS = ("subtract", "zero")
FUSE_MIN_NUMEL = 1 << 17  # below this, the eager ops cost no more than a compiled call (~0.1 ms)
COUNT_MIN_NUMEL = 1 << 14  # the same for if_count, whose eager ops also write the spikes out
SCAN_BLOCK = 8  # steps per compiled call: one graph per block length, unrolled


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
        v: membrane potential ``[N, ...]`` at the start; it may be advanced in place, so the
            caller passes the state it owns and keeps the returned potential.
        threshold: ``Vth``, broadcastable to ``v``.
        steps: number of time steps.
        reset: ``"subtract"`` (v -= Vth on a spike) or ``"zero"`` (v = 0 on a spike).
        bias: extra current added at every step (Deng & Gu's threshold shift uses ``Vth / 2T``):
            a number or a tensor broadcastable to ``v``, or one per step ``[steps, ...]`` (one
            more dimension than ``v``; a time-dependent bias, see :meth:`IFNeuron.scan`).
        residual: a second input current shaped like ``x`` (``[steps, N, ...]`` or ``[N, ...]``),
            added to it: a residual add feeding the neuron, which the compiled scan sums in
            registers instead of writing ``x + residual`` out.

    Returns:
        Spikes scaled by ``Vth`` as ``[steps, N, ...]`` and the final potential.
    """
    no_bias = isinstance(bias, float) and bias == 0.0
    if _needs_grad(x, threshold, residual):
        x = x if residual is None else x + residual
        x = x if no_bias else x + bias
        return surrogate_scan(x, v, threshold, steps, reset)
    if residual is not None and residual.requires_grad:
        x, residual = x + residual, None
    scan = _compiled_scan(x, v)
    if scan is not None:
        b = None if no_bias else torch.as_tensor(bias, dtype=v.dtype, device=v.device)
        out = _scan_compiled(scan, x, residual, b, v, threshold, steps, reset)
        if out is not None:
            return out
    if residual is not None:
        x = x + residual
    if not no_bias:
        x = x + bias  # the compiled block's order, (x + residual) + bias
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


def if_count(
    x: Tensor,
    v: Tensor,
    threshold: Tensor,
    steps: int,
    reset: str = "subtract",
    bias: Tensor | float = 0.0,
    spikes: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`if_scan` as calibration reads it: the number of spikes per element ``[N, ...]``
    (float), the final potential and, with ``spikes``, the spike trains as bool ``[steps, N, ...]``.

    The same neuron without the scaled output, which the calibration sweep would only average:
    compiled, a block of steps reads its input and writes the counts (and the spikes if asked)."""
    no_bias = isinstance(bias, float) and bias == 0.0
    scan = _compiled_scan(x, v, count=True)
    if scan is not None:
        b = None if no_bias else torch.as_tensor(bias, dtype=v.dtype, device=v.device)
        count = torch.zeros_like(v)
        fired = torch.empty((steps, *v.shape), dtype=torch.bool, device=v.device) if spikes else None
        for t0 in range(0, steps, SCAN_BLOCK):
            n = min(SCAN_BLOCK, steps - t0)
            out = _call(scan, t0, v, count, _steps(x, v, t0, n), _steps(b, v, t0, n), threshold,
                        reset == "subtract", n, spikes)
            if out is None:
                break
            s, v, count = out
            if spikes:  # 0/1 as float from the kernel (its C++ code writes bools slowly);
                fired[t0 : t0 + n].copy_(s)  # a copy casts them faster than a comparison
        else:
            return count, v, fired
    out, v = if_scan(x, v, threshold, steps, reset, bias)
    fired = out != 0
    return fired.sum(0, dtype=v.dtype), v, (fired if spikes else None)


def _steps(a: Tensor | None, v: Tensor, t0: int, n: int) -> Tensor | None:
    """Steps ``t0 .. t0 + n - 1`` of a per-step input (one more dimension than ``v``)."""
    return a[t0 : t0 + n] if a is not None and a.dim() > v.dim() else a


def _needs_grad(x: Tensor, threshold: Tensor, residual: Tensor | None) -> bool:
    return torch.is_grad_enabled() and (
        x.requires_grad or threshold.requires_grad or (residual is not None and residual.requires_grad)
    )


class _Spike(torch.autograd.Function):
    """``[v >= Vth]`` whose gradient is the surrogate ``0.3 * max(0, 1 - |v / Vth - 1|) / Vth``
    (the piecewise-linear surrogate of Rathi et al.'s hybrid training code)."""

    @staticmethod
    def forward(ctx, v: Tensor, threshold: Tensor) -> Tensor:
        ctx.save_for_backward(v, threshold)
        return (v >= threshold).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        v, threshold = ctx.saved_tensors
        return grad * 0.3 * (1 - (v / threshold - 1).abs()).clamp_min(0) / threshold, None


def surrogate_scan(
    x: Tensor, v: Tensor, threshold: Tensor, steps: int, reset: str = "subtract"
) -> tuple[Tensor, Tensor]:
    """:func:`if_scan` for back-propagation through time: the same values, out-of-place ops, and a
    surrogate gradient for the spike (used whenever autograd needs the input's gradient)."""
    outs = []
    for t in range(steps):
        v = v + (x if x.dim() == v.dim() else x[t])
        s = _Spike.apply(v, threshold)
        out = s * threshold
        v = v - out if reset == "subtract" else v * (1 - s)
        outs.append(out)
    return torch.stack(outs), v


def _if_block(
    v: Tensor,
    x: Tensor,
    residual: Tensor | None,
    bias: Tensor | None,
    threshold: Tensor,
    subtract: bool,
    steps: int,
) -> tuple[Tensor, Tensor]:
    """``steps`` steps of :func:`if_scan` as one pure graph, which torch.compile fuses into one
    pass: each element's potential stays in a register while it reads that element's input (and
    residual and bias) and writes its spikes for every step. Eager, these ops would be slower than
    the loop in :func:`if_scan`; compiled, a step costs less than the ANN's BN + ReLU."""
    outs = []
    for t in range(steps):
        v, s = _block_step(v, x, residual, bias, t, threshold, subtract)
        outs.append(s * threshold)
    return torch.stack(outs), v


def _count_block(
    v: Tensor,
    count: Tensor,
    x: Tensor,
    bias: Tensor | None,
    threshold: Tensor,
    subtract: bool,
    steps: int,
    spikes: bool,
) -> tuple[Tensor | None, Tensor, Tensor]:
    """``steps`` steps of :func:`if_count` as one pure graph (see :func:`_if_block`)."""
    outs = []
    for t in range(steps):
        v, s = _block_step(v, x, None, bias, t, threshold, subtract)
        count = count + s
        if spikes:
            outs.append(s.to(v.dtype))
    return (torch.stack(outs) if spikes else None), v, count


def _block_step(
    v: Tensor,
    x: Tensor,
    residual: Tensor | None,
    bias: Tensor | None,
    t: int,
    threshold: Tensor,
    subtract: bool,
) -> tuple[Tensor, Tensor]:
    """Step ``t`` of a compiled block: charge with ``(x + residual) + bias`` (each per step or
    constant), fire, reset; the new potential and the spikes (bool)."""
    xt = x[t] if x.dim() > v.dim() else x
    if residual is not None:
        xt = xt + (residual[t] if residual.dim() > v.dim() else residual)
    if bias is not None:
        xt = xt + (bias[t] if bias.dim() > v.dim() else bias)
    v = v + xt
    s = v >= threshold
    return (v - s * threshold if subtract else v.masked_fill(s, 0.0)), s


# "scan" -> compiled _if_block, "count" -> compiled _count_block; None once compiling failed here
_compiled: dict[str, object] = {}


def _compiled_scan(x: Tensor, v: Tensor, count: bool = False):
    """The compiled block for large, gradient-free scans, or ``None`` for eager ops
    (``SNNCAL_COMPILE=0``, or torch.compile failed here: no C++ compiler, no Triton)."""
    key = "count" if count else "scan"
    if (
        v.numel() < (COUNT_MIN_NUMEL if count else FUSE_MIN_NUMEL)
        or x.requires_grad
        or v.requires_grad
        or os.environ.get("SNNCAL_COMPILE", "1") == "0"
        or _compiled.get(key, 0) is None
    ):
        return None
    if key not in _compiled:
        # a CPU-only torch warns "No CUDA runtime is found" when inductor builds its C++ kernel
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        # one graph per block length, dtype, device, rank and input layout: a program that
        # simulates several networks needs more than dynamo's default of 8 before it would stop
        cfg = torch._dynamo.config
        cfg.recompile_limit = max(cfg.recompile_limit, 64)
        _compiled[key] = torch.compile(_count_block if count else _if_block, fullgraph=True)
    return _compiled[key]


def _scan_compiled(
    scan,
    x: Tensor,
    residual: Tensor | None,
    bias: Tensor | None,
    v: Tensor,
    threshold: Tensor,
    steps: int,
    reset: str,
) -> tuple[Tensor, Tensor] | None:
    """:func:`if_scan` in blocks of ``SCAN_BLOCK`` steps; ``None`` if it cannot compile here."""
    blocks = []
    for t0 in range(0, steps, SCAN_BLOCK):
        n = min(SCAN_BLOCK, steps - t0)
        xt, rt, bt = _steps(x, v, t0, n), _steps(residual, v, t0, n), _steps(bias, v, t0, n)
        out = _call(scan, t0, v, xt, rt, bt, threshold, reset == "subtract", n)
        if out is None:
            return None
        blocks.append(out[0])
        v = out[1]
    return (blocks[0] if len(blocks) == 1 else torch.cat(blocks)), v


def _call(scan, t0: int, *args: object) -> tuple | None:
    """One compiled block; ``None`` if it cannot compile here (then IF neurons run as eager ops)."""
    try:
        return scan(*args)
    except Exception as err:  # any backend failure (no C++ compiler, no Triton): fall back
        if t0 > 0:  # compiling happens at the first block, and the blocks do not touch v
            raise
        warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); IF neurons run "
                      "as eager ops from now on, which is slower", stacklevel=4)
        _compiled["scan"] = _compiled["count"] = None
        return None


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
        return if_count(x, v, self.threshold.to(v.dtype), T, self.reset, bias, spikes)

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
