"""What calibration measures and reports: a layer's error sums (:class:`LayerStats`), and the
plain-data reports of a calibration (:class:`LayerReport`, :class:`CalibrationReport`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["CalibrationReport", "LayerReport", "LayerStats"]


@dataclass
class LayerStats:
    """Sums over the calibration set: ``rate - target`` (element-wise), its square, and how many
    inputs fall in the neuron's linear range ``0 < mean current < Vth`` (element-wise). Exact sums
    over every process's share (:class:`~snncal.core.calibrate.sums.ExactSum`), as the sweep
    measures them."""

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
    # seconds per step over all layers; "ann": the layers' ANN inputs, "finish": each layer's
    # last simulation (spike trains stored for the layers after it), then the network steps
    step_seconds: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # what network steps report (e.g. hybrid's losses)
