"""Threshold statistics: observers that watch an activation's input in the ANN and answer a ``Vth``.

Observers return their input unchanged and keep statistics in buffers. Every statistic is a
reduction that :meth:`all_reduce` combines across processes (``torch.distributed``, a no-op in
one): ``MaxObserver.max_val`` by max, ``HistogramObserver.hist`` by sum. Histogram methods need two
passes over the data (the range first, then the counts), which keeps the bins exact without
re-binning; built on the all-reduced range, the summed counts equal those of one process that saw
every rank's data.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from snncal.core import distributed as dist
from snncal.core.neuron import clip_floor

__all__ = [
    "RULES",
    "HistogramObserver",
    "MaxObserver",
    "finalize",
]

RULES = ("max", "percentile", "mmse")  # threshold rules answered by the observers


CHUNK = 1 << 20  # elements per step of a histogram: its temporaries stay in the CPU's cache


def _channel_dims(x: Tensor) -> tuple[int, ...]:
    """Every axis of ``[N, C, ...]`` but the channel axis."""
    return (0, *range(2, x.dim()))


class MaxObserver(nn.Module):
    """Running maximum of ``min(ReLU(x), cap)``, per layer or per channel (axis 1)."""

    def __init__(self, per_channel: bool = False, cap: float | None = None) -> None:
        super().__init__()
        self.per_channel, self.cap = per_channel, cap
        self.register_buffer("max_val", torch.zeros(()))

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        m = x.detach().amax(_channel_dims(x)) if self.per_channel else x.detach().max()
        m = m.clamp(0, self.cap)  # = the maximum of the clamped values, without a copy of x
        self.max_val = torch.maximum(self.max_val.to(m.device), m)
        return x

    def all_reduce(self) -> MaxObserver:
        """The maximum over every process's data (call once every process has observed)."""
        dist.all_reduce_max(self.max_val)
        return self


class HistogramObserver(nn.Module):
    """Histogram of the positive part of ``min(x, cap)`` over ``[0, max_val]``, ``bins`` bins.

    Non-positive inputs are left out: both ``ReLU`` and ``ClipFloor`` map them to 0, so they add no
    error for any threshold.
    """

    def __init__(self, max_val: Tensor, bins: int = 2048, cap: float | None = None) -> None:
        super().__init__()
        self.bins, self.cap = bins, cap
        self.register_buffer("max_val", max_val.detach().clone())
        self.register_buffer("hist", torch.zeros((*max_val.shape, bins), dtype=torch.float64))

    @property
    def per_channel(self) -> bool:
        return self.max_val.dim() == 1

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        y = x.detach()
        y = y.reshape(len(y), y.shape[1], -1) if self.per_channel else y.reshape(len(y), 1, -1)
        scale = self.max_val.to(y.device).clamp_min(1e-12).view(1, -1, 1)
        offset = torch.arange(y.shape[1], device=y.device).view(1, -1, 1) * self.bins
        dump = self.hist.numel()  # non-positive inputs (and NaN) are counted here, then dropped
        counts = torch.zeros(dump + 1, dtype=torch.int64, device=y.device)
        for part in y.split(max(1, CHUNK // y[0].numel())):
            part = part.clamp(max=self.cap) if self.cap is not None else part
            idx = (part / scale * self.bins).long().clamp_(0, self.bins - 1).add_(offset)
            counts += torch.bincount(idx.masked_fill_(~(part > 0), dump).flatten(), minlength=dump + 1)
        self.hist += counts[:dump].view_as(self.hist).to(self.hist)
        return x

    def all_reduce(self) -> HistogramObserver:
        """The counts of every process's data (each process must share ``max_val``)."""
        dist.all_reduce_sum(self.hist)
        return self

    def _centers(self) -> Tensor:
        frac = (torch.arange(self.bins, dtype=torch.float64) + 0.5) / self.bins
        centers = self.max_val.double().cpu()[..., None] * frac
        if self.cap is not None:  # inputs clipped to the cap sit at the cap, not inside the top bin
            at_cap = self.max_val.double().cpu() >= self.cap
            centers[..., -1] = torch.where(at_cap, self.cap, centers[..., -1])
        return centers

    def mse(self, thresholds: Tensor, T: int) -> Tensor:
        """``||ReLU(x) - ClipFloor(x)||^2`` summed over the histogram, one value per threshold.

        ``thresholds`` is ``[K]`` (or ``[K, C]`` per channel); returns the same shape.
        """
        centers, hist = self._centers(), self.hist.cpu()
        th = thresholds.double()[..., None]  # [K, (C,) 1] against [(C,) bins]
        return torch.cat([
            (hist * (centers - clip_floor(centers, part, T)) ** 2).sum(-1)
            for part in th.split(max(1, (1 << 16) // hist.numel()))
        ])

    def mmse(self, T: int, candidates: int = 200) -> Tensor:
        """The paper's threshold: argmin over a grid ``max * k / K`` of the ClipFloor MSE."""
        grid = torch.arange(1, candidates + 1, dtype=torch.float64) / candidates
        thresholds = grid.view(-1, *([1] * self.max_val.dim())) * self.max_val.double().cpu()
        best = self.mse(thresholds, T).argmin(0)
        if self.per_channel:
            return thresholds.gather(0, best[None]).squeeze(0).float()
        return thresholds[best].float()

    def percentile(self, q: float) -> Tensor:
        """The ``q``-th percentile (0-100) of the positive inputs (Rueckauer et al. 2017)."""
        cdf = self.hist.cpu().cumsum(-1)
        total = cdf[..., -1:].clamp_min(1)
        idx = (cdf / total < q / 100).sum(-1).clamp(max=self.bins - 1)
        return ((idx + 1).double() / self.bins * self.max_val.double().cpu()).float()


def finalize(threshold: Tensor, max_val: Tensor) -> Tensor:
    """Replace zero thresholds (channels that never fired in the ANN) by the layer's max or 1."""
    fallback = max_val.max() if max_val.max() > 0 else torch.ones(())
    return torch.where(threshold > 0, threshold, fallback.to(threshold))
