"""Block reconstruction (after BRECQ, Li et al., ICLR 2021): fit the weights of a whole residual
block to the block's ANN output.

Weight calibration fits one layer's weights so that ``ClipFloor`` of its current matches the ANN;
the layers before it are fixed, so an error that one of them makes is only corrected where the
next layer's weights can undo it linearly. Block reconstruction fits the weights of every layer
between the values the sweep still holds (in a residual block: the block's input, kept for the
shortcut) and the block's last neuron at once, against that neuron's ANN output
(:func:`~snncal.core.calibrate.reconstruct.reconstruct`). Where the block is the layer alone (a
chain), it is weight calibration. The ``_spikes`` variant adds each neuron's measured temporal
error to the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from snncal.core.calibrate.reconstruct import reconstruct

if TYPE_CHECKING:
    from snncal.core.calibrate.layer import Layer
    from snncal.core.config import ConvertConfig

__all__ = ["block_reconstruction", "block_reconstruction_spikes"]


def block_reconstruction(layer: Layer, cfg: ConvertConfig) -> None:
    """Fit the weights of :meth:`~snncal.core.calibrate.sweep.Layer.block` and of this layer to
    this layer's ANN output (weight calibration where the block is the layer alone)."""
    reconstruct(layer, cfg, layer.block(), spikes=False)


def block_reconstruction_spikes(layer: Layer, cfg: ConvertConfig) -> None:
    """:func:`block_reconstruction` with each neuron's measured temporal error in the model."""
    reconstruct(layer, cfg, layer.block(), spikes=True)
