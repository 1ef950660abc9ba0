"""Block reconstruction (after BRECQ, Li et al., ICLR 2021): fit the weights of a whole residual
block to the block's ANN output, and weight calibration through the spike train.

Weight calibration (:mod:`~snncal.core.calibrate.weight`) fits one layer's weights so that
``ClipFloor`` of its current matches the ANN; the layers before it are fixed, so an error that one
of them makes is only corrected where the next layer's weights can undo it linearly. Block
reconstruction fits the weights of every layer between the values the sweep still holds (in a
residual block: the block's input, kept for the shortcut) and the block's last neuron at once,
against that neuron's ANN output, each inner neuron modelled by its straight-through ``ClipFloor``
(BRECQ's loss is the block output's alone: inner neurons are free to deviate from their ANN
activations where that helps the block). Inner layers are simulated again afterwards and their
spike trains replaced, so the rest of the sweep reads the new ones. Where the block is the layer
alone (a chain), it is weight calibration.

``ClipFloor`` of the mean current is what a neuron fires for a *constant* current; fed spike trains,
it fires a little differently (the temporal error, docs/results.md "Where the error comes from").
The ``_spikes`` variants measure, once before the fit, each image's difference between the rate
the simulation gives and ``ClipFloor`` of its mean current, and add it to the model's output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, fx

from snncal.core.calibrate.weight import clip_floor_ste, fit
from snncal.core.neuron import clip_floor

if TYPE_CHECKING:
    from snncal.core.calibrate.sweep import Layer
    from snncal.core.config import ConvertConfig


__all__ = [
    "block_reconstruction", "block_reconstruction_spikes", "effective_v0", "rate_model", "reconstruct",
    "temporal_offsets", "weight_calibration_spikes",
]

def effective_v0(layer: Layer) -> Tensor:
    """The initial potential that, for a constant current, ends in the spike count the neuron's
    extra currents give: ``v(0)``, plus ``Vth / 2`` with the threshold shift, plus the sum of a
    time-dependent bias over ``T`` steps."""
    neuron, v0 = layer.neuron, layer.neuron.v0
    if neuron.shift:
        v0 = v0 + neuron.threshold / 2
    if neuron.step_bias is not None:
        v0 = v0 + neuron.bias_at(0, layer.T).sum(0)[0]
    return v0


def rate_model(layer: Layer, current: Tensor, straight_through: bool = True) -> Tensor:
    """The neuron's rate (times ``Vth``) for a constant ``current``: ``ClipFloor``, whose floor
    passes gradients straight through if asked."""
    rule = clip_floor_ste if straight_through else clip_floor
    return rule(current, layer.neuron.threshold, layer.T, effective_v0(layer))


def _model_output(node: Layer, values: dict[fx.Node, Tensor], offsets: dict[Layer, Tensor] | None,
                  idx: Tensor) -> Tensor:
    """``node``'s modelled rate from its segment's input ``values`` (plus its temporal offset)."""
    out = rate_model(node, node.current(values))
    return out if offsets is None else out + offsets[node][idx]


def _forward(layer: Layer, inner: list[Layer], values: dict[fx.Node, Tensor],
             offsets: dict[Layer, Tensor] | None, idx: Tensor) -> Tensor:
    """``layer``'s modelled rate from the block's input ``values``, through the inner neurons."""
    values = dict(values)
    for node in inner:
        values[node.segment.neuron] = _model_output(node, values, offsets, idx)
    return _model_output(layer, values, offsets, idx)


@torch.no_grad()
def temporal_offsets(layer: Layer, inner: list[Layer]) -> dict[Layer, Tensor]:
    """Per layer of the block, each image's rate in the simulation minus ``ClipFloor`` of its mean
    input current: the stored rates for the inner layers, a simulation for ``layer``."""
    offsets = {}
    for node in inner:
        rates = layer.rates(node.segment.inputs)
        own = layer.rates([node.segment.neuron])[node.segment.neuron]
        offsets[node] = own - rate_model(node, node.current(rates), straight_through=False)
    delta = torch.empty_like(layer.target)
    for index, current, out in layer.simulation():
        delta[index] = out.mean(0) - rate_model(layer, current.mean(0), straight_through=False)
    offsets[layer] = delta
    return offsets


def reconstruct(layer: Layer, cfg: ConvertConfig, inner: list[Layer], spikes: bool) -> None:
    """Minimise ``||model(r) - ReLU_ANN||^2`` over the weights of ``inner`` and ``layer``; ``r``
    are the calibrated SNN rates of the block's inputs. Adam as in weight calibration; the loss
    before and after goes to ``layer.info["weight_loss"]``, the block to ``layer.info["block"]``."""
    offsets = temporal_offsets(layer, inner) if spikes else None
    rates = layer.rates(layer.block_inputs(inner))
    params = list({id(p): p for node in [*inner, layer] for m in node.synapses
                   for p in m.parameters()}.values())
    target = layer.target

    def loss(idx: Tensor) -> Tensor:
        out = _forward(layer, inner, {n: v[idx] for n, v in rates.items()}, offsets, idx)
        return ((out - target[idx]) ** 2).flatten(1).sum(1).mean()

    with torch.enable_grad():
        layer.info["weight_loss"] = fit(
            loss, params, len(target), iters=cfg.weight_iters, lr=cfg.weight_lr,
            batch=cfg.weight_batch, generator=layer.generator,
        )
    if inner:
        layer.info["block"] = [node.name for node in inner]
    for node in inner:  # in graph order: each one reads the restored trains of those before it
        node.restore()
    layer.changed()


def block_reconstruction(layer: Layer, cfg: ConvertConfig) -> None:
    """Fit the weights of :meth:`~snncal.core.calibrate.sweep.Layer.block` and of this layer to
    this layer's ANN output (weight calibration where the block is the layer alone)."""
    reconstruct(layer, cfg, layer.block(), spikes=False)


def block_reconstruction_spikes(layer: Layer, cfg: ConvertConfig) -> None:
    """:func:`block_reconstruction` with each neuron's measured temporal error in the model."""
    reconstruct(layer, cfg, layer.block(), spikes=True)


def weight_calibration_spikes(layer: Layer, cfg: ConvertConfig) -> None:
    """Weight calibration of this layer alone with its measured temporal error in the model."""
    reconstruct(layer, cfg, [], spikes=True)
