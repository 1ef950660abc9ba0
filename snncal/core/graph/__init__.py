"""torch.fx tracing and the rewrite passes that turn a user's ANN into snncal's canonical graph."""

from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from snncal.core.graph import passes
from snncal.core.graph.passes import (
    avgpool_to_dwconv,
    canonicalize_activations,
    check_supported,
    fold_bn,
    is_activation,
    maxpool_to_avgpool,
    remove_dropout,
)
from snncal.core.graph.trace import ConversionError, node_location, trace

__all__ = [
    "ConversionError",
    "avgpool_to_dwconv",
    "canonicalize_activations",
    "check_supported",
    "fold_bn",
    "is_activation",
    "maxpool_to_avgpool",
    "node_location",
    "prepare",
    "remove_dropout",
    "trace",
]


def prepare(
    model: nn.Module,
    example: torch.Tensor,
    *,
    maxpool_to_avgpool: bool = False,
    convert_avgpool: bool = True,
) -> fx.GraphModule:
    """Trace a copy of ``model`` and rewrite it into the canonical ANN that converts 1:1 to an SNN.

    The result computes the same function as ``model`` in eval mode (unless ``maxpool_to_avgpool``),
    with BN folded, Dropout removed and one activation module per ReLU call; ``convert_avgpool``
    turns average pools of spikes into depthwise conv + activation. ``example`` is one input batch.
    """
    model = copy.deepcopy(model).eval()
    gm = passes.canonicalize_activations(trace(model))  # first: in-place ops look dead to DCE
    gm = passes.fold_bn(passes.remove_dropout(gm))
    if maxpool_to_avgpool:
        gm = passes.maxpool_to_avgpool(gm)
    if convert_avgpool:
        gm = passes.avgpool_to_dwconv(gm, example)
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    passes.check_supported(gm)
    return gm
