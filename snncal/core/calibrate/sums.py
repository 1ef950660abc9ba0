"""Exact sums: calibration's statistics give the same bits however the images are split.

A float sum depends on the order of its terms, and calibration sums over minibatches (whose size
``max_batch`` sets) and over processes (``torch.distributed``). One flipped last bit of a layer's
mean error moves its bias, flips a spike, and the layers after it amplify that (docs/distributed.md).
:class:`ExactSum` therefore rounds each term once to a fixed point and adds integers, which is
associative:

    q(x) = round(x * 2^k)  (int64),    sum = (sum_i q(x_i)) / 2^k,

with ``2^k`` the largest power of two such that ``bound * terms * 2^k <= 2^62``, where ``bound``
bounds ``|x|`` and ``terms`` is the number of terms summed into one element over every process's
images. Both are the same however the images are split, so each term is rounded the same way and
the sum is the same integer. Multiplying a float by ``2^k`` is exact, so rounding is the only
error: at most ``2^-(k+1) < bound * terms * 2^-62`` per term, so a mean is that close to the
exact mean of the float terms (for 2^20 terms, ``bound * 2^-42``; a float32 sum of as many terms
rounds by up to ``~terms * 2^-24`` of the bound).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from snncal.core import distributed as dist

__all__ = ["ExactSum", "all_reduce_exact"]

_HEADROOM = 62  # int64 holds 2^63: one bit left for the rounding of each term
_EXPONENT = 100  # |k| at most this: 2^k stays a normal float32 number


class ExactSum:
    """A sum of float tensors whose bits do not depend on the order or grouping of its terms.

    Args:
        bound: a bound on ``|term|``, the same on every process (e.g. all-reduced).
        terms: the largest number of terms summed into one element over all processes.
    """

    def __init__(self, bound: float, terms: int) -> None:
        exponent = math.frexp(max(float(bound) * max(int(terms), 1), 2.0**-_EXPONENT))[1]
        self.k = max(-_EXPONENT, min(_EXPONENT, _HEADROOM - exponent))  # bound * terms < 2^(62 - k)
        self.ints: Tensor | None = None

    def add(self, x: Tensor, dim: int | tuple[int, ...] | None = None) -> None:
        """Add ``x`` summed over ``dim`` (every axis if ``None``)."""
        q = torch.round(x * 2.0**self.k).to(torch.int64)  # * 2^k is exact: only round() rounds
        q = q.sum() if dim is None else q.sum(dim)
        self.ints = q if self.ints is None else self.ints + q

    def value(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The sum so far (zero if nothing was added)."""
        if self.ints is None:
            return torch.zeros((), dtype=dtype)
        return (self.ints.double() * 2.0**-self.k).to(dtype)


def all_reduce_exact(*sums: ExactSum) -> None:
    """Sum each of ``sums`` over every process, in one int64 all-reduce (exact: integers). Every
    process must have added to each of them (an empty one cannot take part). No-op in one process."""
    if not dist.is_parallel():
        return
    parts = [s.ints for s in sums]
    if any(p is None for p in parts):
        raise ValueError("all_reduce_exact: a sum without terms has no shape to reduce")
    flat = dist.all_reduce_sum(torch.cat([p.flatten() for p in parts]))
    for s, part in zip(sums, flat.split([p.numel() for p in parts])):
        s.ints = part.view_as(s.ints)
