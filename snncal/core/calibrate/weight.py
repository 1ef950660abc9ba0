"""Weight calibration (Li et al. 2021, Sec. 4.3): fit a layer's weights to the ANN through ClipFloor.

``min_W ||ClipFloor(W r + b) - ReLU_ANN||^2`` over the weights of the layer's segment, where ``r``
are the calibrated SNN rates of the segment's inputs (residual inputs included) and ``ClipFloor``
models the neuron with its effective initial potential (the threshold shift and a time-dependent
bias included). Adam with a cosine schedule, ``cfg.weight_iters`` minibatches of
``cfg.weight_batch`` images; the loss before and after goes to ``layer.info["weight_loss"]``.
It is :func:`~snncal.core.calibrate.reconstruct.reconstruct` on a block of one layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from snncal.core.calibrate.reconstruct import reconstruct

if TYPE_CHECKING:
    from snncal.core.calibrate.layer import Layer
    from snncal.core.config import ConvertConfig

__all__ = ["weight_calibration", "weight_calibration_spikes"]


def weight_calibration(layer: Layer, cfg: ConvertConfig) -> None:
    """Minimise ``||ClipFloor(W r + b) - ReLU_ANN||^2`` over the weights of the layer's segment."""
    reconstruct(layer, cfg, [], spikes=False)


def weight_calibration_spikes(layer: Layer, cfg: ConvertConfig) -> None:
    """Weight calibration of this layer alone with its measured temporal error in the model."""
    reconstruct(layer, cfg, [], spikes=True)
