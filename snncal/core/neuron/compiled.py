"""The IF neuron's scan and count as compiled blocks of ``SCAN_BLOCK`` steps, with their fallback.

torch.compile fuses a block into one pass over the elements; where it cannot compile (no C++
compiler, no Triton) or ``SNNCAL_COMPILE=0``, :func:`compiled_block` answers ``None`` and the
kernels run as eager ops, which give the same bits.
"""

from __future__ import annotations

import logging
import os
import warnings

import torch
from torch import Tensor

__all__ = [
    "COUNT_MIN_NUMEL",
    "FUSE_MIN_NUMEL",
    "SCAN_BLOCK",
    "block_steps",
    "compiled_block",
    "count_in_blocks",
    "scan_in_blocks",
]

FUSE_MIN_NUMEL = 1 << 17  # below this, the eager ops cost no more than a compiled call (~0.1 ms)
COUNT_MIN_NUMEL = 1 << 14  # the same for if_count, whose eager ops also write the spikes out
SCAN_BLOCK = 8  # steps per compiled call: one graph per block length, unrolled


def block_steps(a: Tensor | None, v: Tensor, t0: int, n: int) -> Tensor | None:
    """Steps ``t0 .. t0 + n - 1`` of a per-step input (one more dimension than ``v``)."""
    return a[t0 : t0 + n] if a is not None and a.dim() > v.dim() else a


def _if_block(
    v: Tensor,
    x: Tensor,
    residual: Tensor | None,
    bias: Tensor | None,
    threshold: Tensor,
    subtract: bool,
    steps: int,
) -> tuple[Tensor, Tensor]:
    """``steps`` steps of :func:`.if_scan` as one pure graph, which torch.compile fuses into one
    pass: each element's potential stays in a register while it reads that element's input (and
    residual and bias) and writes its spikes for every step. Eager, these ops would be slower than
    the loop in :func:`.if_scan`; compiled, a step costs less than the ANN's BN + ReLU."""
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
    """``steps`` steps of :func:`.if_count` as one pure graph (see :func:`_if_block`)."""
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


def compiled_block(x: Tensor, v: Tensor, count: bool = False):
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


def scan_in_blocks(
    block,
    x: Tensor,
    residual: Tensor | None,
    bias: Tensor | None,
    v: Tensor,
    threshold: Tensor,
    steps: int,
    reset: str,
) -> tuple[Tensor, Tensor] | None:
    """:func:`.if_scan` in blocks of ``SCAN_BLOCK`` steps; ``None`` if it cannot compile here."""
    blocks = []
    for t0 in range(0, steps, SCAN_BLOCK):
        n = min(SCAN_BLOCK, steps - t0)
        xt, rt, bt = block_steps(x, v, t0, n), block_steps(residual, v, t0, n), block_steps(bias, v, t0, n)
        out = _call(block, t0, v, xt, rt, bt, threshold, reset == "subtract", n)
        if out is None:
            return None
        blocks.append(out[0])
        v = out[1]
    return (blocks[0] if len(blocks) == 1 else torch.cat(blocks)), v


def count_in_blocks(
    block,
    x: Tensor,
    bias: Tensor | None,
    v: Tensor,
    threshold: Tensor,
    steps: int,
    reset: str,
    spikes: bool,
) -> tuple[Tensor, Tensor, Tensor | None] | None:
    """:func:`.if_count` in blocks of ``SCAN_BLOCK`` steps; ``None`` if
    it cannot compile here."""
    count = torch.zeros_like(v)
    fired = torch.empty((steps, *v.shape), dtype=torch.bool, device=v.device) if spikes else None
    for t0 in range(0, steps, SCAN_BLOCK):
        n = min(SCAN_BLOCK, steps - t0)
        out = _call(block, t0, v, count, block_steps(x, v, t0, n), block_steps(bias, v, t0, n),
                    threshold, reset == "subtract", n, spikes)
        if out is None:
            return None
        s, v, count = out
        if spikes:  # 0/1 as float from the kernel (its C++ code writes bools slowly);
            fired[t0 : t0 + n].copy_(s)  # a copy casts them faster than a comparison
    return count, v, fired


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


