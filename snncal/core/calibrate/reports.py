"""What calibration measures and reports: a layer's error sums (:class:`LayerStats`), and the
plain-data reports of a calibration (:class:`LayerReport`, :class:`CalibrationReport`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from snncal.core import distributed as dist

__all__ = ["CalibrationReport", "LayerReport", "LayerStats"]


@dataclass
class LayerStats:
    """Sums over the calibration set: ``rate - target`` (element-wise), its square, and how many
    inputs fall in the neuron's linear range ``0 < mean current < Vth`` (element-wise)."""

    error_sum: Tensor
    linear_sum: Tensor
    sq_sum: float
    count: int

    @property
    def element_error(self) -> Tensor:
        """Mean error per element ``[C, ...]``."""
        return self.error_sum / self.count

    @property
    def channel_error(self) -> Tensor:
        """Mean error per channel ``[C]``."""
        e = self.element_error
        return e.flatten(1).mean(1) if e.dim() > 1 else e

    @property
    def element_gain(self) -> Tensor:
        """Per element, d E[rate] / d(input shift): the fraction of inputs in the linear range."""
        return self.linear_sum / self.count

    @property
    def channel_gain(self) -> Tensor:
        """Per channel, d E[rate] / d(input shift)."""
        g = self.element_gain
        return g.flatten(1).mean(1) if g.dim() > 1 else g

    @property
    def mse(self) -> float:
        return self.sq_sum / (self.count * self.error_sum.numel())

    def all_reduce(self) -> LayerStats:
        """The sums over every process's share of the calibration set, in one all-reduce (in place;
        a no-op in one process)."""
        if not dist.is_parallel():
            return self
        n = self.error_sum.numel()
        flat = torch.cat([self.error_sum.flatten().double(), self.linear_sum.flatten().double(),
                          self.error_sum.new_tensor([self.sq_sum, self.count], dtype=torch.float64)])
        flat = dist.all_reduce_sum(flat)
        self.error_sum = flat[:n].view_as(self.error_sum).to(self.error_sum.dtype)
        self.linear_sum = flat[n : 2 * n].view_as(self.linear_sum).to(self.linear_sum.dtype)
        self.sq_sum, self.count = float(flat[-2]), int(flat[-1])
        return self


@dataclass
class LayerReport:
    """Calibration of one neuron: errors of its rate against the ANN, before and after."""

    name: str
    mse_before: float
    mse_after: float
    mean_error_before: float  # mean |channel-wise mean error|
    mean_error_after: float
    weight_loss: tuple[float, float] | None = None  # weight calibration loss before / after
    seconds: float = 0.0


@dataclass
class CalibrationReport:
    """What a calibration did, layer by layer; plain data for results files."""

    method: str
    steps: tuple[str, ...]
    T: int
    num_images: int
    layers: list[LayerReport] = field(default_factory=list)
    seconds: float = 0.0
    node_runs: int = 0  # segment-node executions, to check cost is linear in depth
    extra: dict = field(default_factory=dict)  # what network steps report (e.g. hybrid's losses)
