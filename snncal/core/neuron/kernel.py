"""The integrate-and-fire neuron's kernels: pure functions over ``[T, N, ...]`` (charge, fire, reset).

With reset by subtraction and zero initial potential, an IF neuron driven by a constant current ``x``
for ``T`` steps fires ``clip(floor(x * T / Vth), 0, T)`` spikes, so its rate times ``Vth`` is
``clip_floor(x)``: the function calibration compares against ``ReLU(x)``. Large gradient-free scans
run as compiled blocks (:mod:`snncal.core.neuron.compiled`), which give the same bits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from snncal.core.neuron.compiled import compiled_block, count_in_blocks, scan_in_blocks

__all__ = ["RESETS", "clip_floor", "if_count", "if_scan", "surrogate_scan"]

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
    block = compiled_block(x, v)
    if block is not None:
        b = None if no_bias else torch.as_tensor(bias, dtype=v.dtype, device=v.device)
        out = scan_in_blocks(block, x, residual, b, v, threshold, steps, reset)
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
    x: Tensor, v: Tensor, threshold: Tensor, steps: int, *,
    reset: str = "subtract", bias: Tensor | float = 0.0, spikes: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`if_scan` as calibration reads it: the number of spikes per element ``[N, ...]``
    (float), the final potential and, with ``spikes``, the spike trains as bool ``[steps, N, ...]``.

    The same neuron without the scaled output, which the calibration sweep would only average:
    compiled, a block of steps reads its input and writes the counts (and the spikes if asked)."""
    no_bias = isinstance(bias, float) and bias == 0.0
    block = compiled_block(x, v, count=True)
    if block is not None:
        b = None if no_bias else torch.as_tensor(bias, dtype=v.dtype, device=v.device)
        out = count_in_blocks(block, x, b, v, threshold, steps, reset, spikes)
        if out is not None:
            return out
    out, v = if_scan(x, v, threshold, steps, reset, bias)
    fired = out != 0
    return fired.sum(0, dtype=v.dtype), v, (fired if spikes else None)


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
