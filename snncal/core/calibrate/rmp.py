"""RMP-SNN's threshold balancing (Han, Srinivasan & Roy, CVPR 2020) for soft-reset neurons.

A neuron with reset by subtraction (the "residual membrane potential" neuron) fires at the rate of
its mean input current over ``Vth`` for as long as that mean stays in ``[0, Vth]``: its input-output
curve is linear there. RMP-SNN therefore balances each layer, in order, on the *time-averaged*
input current rather than on a single step's (Spike-Norm's rule, :func:`snn_max`, whose
coincidences of many input spikes in one step give thresholds far above what the neuron's rate
ever needs, the more so the more steps are watched).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from snncal.core import observers as obs
from snncal.core.calibrate.thresholds import set_threshold

__all__ = [
    "rmp_threshold",
]

if TYPE_CHECKING:
    from snncal.core.calibrate.layer import Layer
    from snncal.core.config import ConvertConfig


@torch.no_grad()
def rmp_threshold(layer: Layer, cfg: ConvertConfig) -> None:
    """In graph order, ``Vth`` = the largest time-averaged input current of the layer over its
    elements and the calibration images, with the layers before it already balanced,

        Vth^l = max_(n, i) (1/T) sum_t (W^l s^(l-1)_t + b^l)_(n, i),

    simulated over ``cfg.T`` steps: the smallest threshold at which no neuron's rate would
    exceed one spike per step. One value per layer (or per channel if configured)."""
    observer = obs.MaxObserver(cfg.per_channel, layer.neuron.ann_max)
    for _, x in layer.input_currents():
        observer(x.mean(0))
    top = observer.all_reduce().max_val
    set_threshold(layer, top, top)
