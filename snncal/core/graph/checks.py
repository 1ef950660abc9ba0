"""The checks that refuse, with one clear message, what cannot become a spiking network: ops the
op table (:mod:`~snncal.core.graph.ops`) lacks or that are not linear in the input, weights that are
not finite, and an input that a constant broadcasts up before the first layer reads it."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import fx, nn

from snncal.core.graph.ops import lookup, node_arg, targets
from snncal.core.graph.passes import blame, is_activation
from snncal.core.graph.trace import ConversionError, describe, known_value

__all__ = ["check_finite", "check_input_broadcast", "check_supported"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_HINTS = {
    nn.MaxPool2d: "pass maxpool_to_avgpool=True (and fine-tune), or build the model with AvgPool2d",
    F.max_pool2d: "pass maxpool_to_avgpool=True (and fine-tune), or build the model with avg_pool2d",
}
_BATCH_STATS_HINT = (
    "it normalises with each batch's statistics (track_running_stats=False); train it with "
    "running statistics, or fold them into the previous layer"
)
_CAT0_HINT = (
    "dim 0 holds the batch (and, in the spiking network, time); concatenate along channels "
    "(dim 1) instead"
)
_SIZE_MATH_HINT = (
    "this arithmetic on sizes is not in snncal's op table (snncal.core.graph.ops), so a saved "
    "network could not hold it; compute the size with +, -, *, // or % instead"
)
_DEFAULT_HINT = (
    "only linear ops and ReLU-family activations (ReLU, ReLU6) convert into integrate-and-fire "
    "neurons; replace it (e.g. SiLU/GELU -> ReLU) and fine-tune the ANN"
)


def _is_shape_math(node: fx.Node) -> bool:
    """Python values in and out (``x.size(1) * x.size(2)``, ``c // 2``): arithmetic on sizes, not
    on the data, so any op is fine. Needs a graph that ran on an example (:func:`propagate`)."""
    return "value" in node.meta and all("value" in a.meta for a in node.all_input_nodes)


def _refusal(gm: fx.GraphModule, node: fx.Node, dynamic: set[fx.Node]) -> str | None:
    """Why ``node`` cannot become part of a spiking network, or ``None`` if it can."""
    mod = gm.get_submodule(node.target) if node.op == "call_module" else None
    op = lookup(gm, node)
    if _is_shape_math(node):
        return None if op is not None else _SIZE_MATH_HINT
    if isinstance(mod, _BN) and (mod.running_mean is None or mod.running_var is None):
        return _BATCH_STATS_HINT
    ok = is_activation(gm, node) or (op is not None and op.role != "size_math")
    if op is not None and op.role in ("mul", "div") and node.op != "call_module":
        args = [a in dynamic for a in node.args[:2]]
        rounds = node.kwargs.get("rounding_mode") is not None
        divides_by_input = op.role == "div" and (args[1:] == [True] or rounds)
        ok = sum(args) <= 1 and not divides_by_input  # x / y, 1 / x, rounded division: not linear
    if node.target is torch.cat and _cat_dim(node) == 0:
        return _CAT0_HINT
    if ok:
        return None
    key = type(mod) if mod is not None else node.target
    return _HINTS.get(key, _DEFAULT_HINT)


def _cat_dim(node: fx.Node) -> object:
    dim = known_value(node_arg(node, 1, "dim", 0))
    shape = getattr(node.meta.get("tensor_meta"), "shape", None)
    return dim + len(shape) if isinstance(dim, int) and dim < 0 and shape is not None else dim


def check_supported(gm: fx.GraphModule) -> None:
    """Raise one clear :class:`ConversionError` for the first op that is not linear or a ReLU.

    Sizes and arithmetic on them (``x.view(x.size(0), -1)``) are fine; a graph that ran on an
    example (:func:`propagate`) tells them from tensors.
    """
    dynamic: set[fx.Node] = set()  # tensors that depend on the input (not constants, not sizes)
    for node in gm.graph.nodes:
        depends = node.op == "placeholder" or any(a in dynamic for a in node.all_input_nodes)
        if depends and "value" not in node.meta:
            dynamic.add(node)
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        with blame(gm, node, "check_supported"):
            hint = _refusal(gm, node, dynamic)
        if hint is not None:
            raise ConversionError(f"cannot convert {describe(gm, node)}: {hint}")


def check_finite(model: nn.Module) -> None:
    """Refuse a model with NaN or infinite parameters or buffers (a diverged or broken checkpoint),
    which would otherwise convert into a network that silently outputs garbage."""
    bad = []
    named = itertools.chain(
        (("parameter", *p) for p in model.named_parameters()),
        (("buffer", *b) for b in model.named_buffers()),
    )
    for kind, name, tensor in named:
        if tensor.is_floating_point() or tensor.is_complex():
            count = int((~torch.isfinite(tensor)).sum())
            if count:
                bad.append(f"{kind} '{name}' has {count} of {tensor.numel()} values NaN or infinite")
    if bad:
        more = f" (and {len(bad) - 5} more tensors)" if len(bad) > 5 else ""
        raise ConversionError(
            f"{type(model).__name__} has weights that are not finite: {'; '.join(bad[:5])}{more}. "
            "The checkpoint is broken (a diverged training run or a bad load): convert a "
            "checkpoint whose weights are all finite."
        )


_ELEMENTWISE = targets("add", "sub", "mul", "div", kind="function") | targets("add", "sub", "mul", "div",
                                                                               kind="method")


def check_input_broadcast(gm: fx.GraphModule) -> None:
    """Refuse an input that a constant broadcasts up before the first layer reads it.

    A model trained on 3-channel images whose first op is ``(x - mean) / std`` with a ``[3, 1, 1]``
    mean quietly turns a 1-channel image into 3 identical channels and runs; so does any other
    size-1 dimension. Needs a graph that ran on an example (:func:`propagate`).
    """
    reached = {n for n in gm.graph.nodes if n.op == "placeholder"}  # the input, before any module
    for node in gm.graph.nodes:
        inputs = [a for a in node.all_input_nodes if a in reached]
        if not inputs or node.op not in ("call_function", "call_method"):
            continue
        reached.add(node)
        src = getattr(inputs[0].meta.get("tensor_meta"), "shape", None)
        out = getattr(node.meta.get("tensor_meta"), "shape", None)
        if node.target in _ELEMENTWISE and src is not None and out is not None and len(src) == len(out):
            grown = [d for d in range(1, len(out)) if src[d] == 1 and out[d] > 1]
            if grown:
                raise ConversionError(
                    f"the input of shape {tuple(src)} is broadcast to {tuple(out)} at {describe(gm, node)}: "
                    f"the model expects size {out[grown[0]]} in dimension {grown[0]}. Pass inputs of the "
                    "shape it was trained on (e.g. 3-channel images for a model trained on CIFAR)"
                )
