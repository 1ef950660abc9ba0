"""torch.fx tracing and the rewrite passes that turn a user's ANN into snncal's canonical graph."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
from torch import fx, nn

from snncal.core.graph import passes
from snncal.core.graph.checks import check_finite, check_input_broadcast, check_supported
from snncal.core.graph.passes import (
    ADVICE,
    SYNAPSES,
    avgpool_to_dwconv,
    canonicalize_activations,
    fold_bn,
    is_activation,
    maxpool_to_avgpool,
    remove_dropout,
    set_module,
)
from snncal.core.graph.trace import ConversionError, first_line, node_location, propagate, trace

__all__ = [
    "SYNAPSES",
    "ConversionError",
    "avgpool_to_dwconv",
    "canonicalize_activations",
    "check_finite",
    "check_input_broadcast",
    "check_supported",
    "fold_bn",
    "is_activation",
    "maxpool_to_avgpool",
    "node_location",
    "prepare",
    "propagate",
    "remove_dropout",
    "set_module",
    "trace",
]

log = logging.getLogger("snncal")


def prepare(
    model: nn.Module,
    example: torch.Tensor,
    *,
    maxpool_to_avgpool: bool = False,
    convert_avgpool: bool = True,
) -> fx.GraphModule:
    """Trace a copy of ``model`` and rewrite it into the canonical ANN that converts 1:1 to an SNN.

    The result computes the same function as ``model`` in eval mode (unless ``maxpool_to_avgpool``),
    in float32, with BN folded, Dropout removed and one activation module per ReLU call;
    ``convert_avgpool`` turns average pools of spikes into depthwise conv + activation. ``example``
    is one input batch (cast to float32 like the model).

    Raises:
        ConversionError: the model has non-finite weights, cannot be traced, fails on ``example``,
            or has an op that does not convert; each message names the node, its source line and
            what to do.
    """
    model = _as_float32(copy.deepcopy(model).eval())
    check_finite(model)
    if example.is_floating_point():
        example = example.float()
    gm = trace(model)
    propagate(gm, example)  # a wrong input fails here, at the user's node, not inside a pass
    check_input_broadcast(gm)
    gm = _run(passes.canonicalize_activations, gm)  # first: in-place ops look dead to DCE
    gm = _run(passes.fold_bn, _run(passes.remove_dropout, gm))
    if maxpool_to_avgpool:
        gm = _run(passes.maxpool_to_avgpool, gm)
    if convert_avgpool:
        gm = _run(passes.avgpool_to_dwconv, gm, example)
    propagate(gm, example)
    _run(check_supported, gm)
    return gm


def _as_float32(model: nn.Module) -> nn.Module:
    """``model`` in float32: the observers, calibration and simulation all compute in float32."""
    dtypes = {t.dtype for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()}
    if dtypes - {torch.float32}:
        names = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
        log.info("converting a copy of %s from %s to float32", type(model).__name__, names)
        model.float()
    return model


def _run(step: Callable, gm: fx.GraphModule, *args) -> fx.GraphModule:
    """``step(gm, *args)``, with any unexpected error as a :class:`ConversionError`.

    Errors at a node are already ConversionErrors that name it (``passes.blame``); this catches the
    rest (e.g. a graph a pass left invalid), keeping the original as ``__cause__``.
    """
    try:
        return step(gm, *args)
    except ConversionError:
        raise
    except Exception as err:
        name = step.__name__
        raise ConversionError(
            f"{name} failed on the graph of {type(gm).__name__} (at no single node): "
            f"{first_line(err)}. {ADVICE[name]}, and please report this error to snncal with the "
            "model's forward()"
        ) from err
