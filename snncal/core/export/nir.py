"""Export a converted spiking network to NIR, the Neuromorphic Intermediate Representation.

:func:`export_nir` walks the SNN's fx graph once, in order, and gives every op its NIR twin
(docs/interop.md has the full table). Each fx value becomes a weighted sum of NIR node outputs
(``Sum``, NIR node name -> coefficient): NIR sums every edge that enters a node, so a residual
``a + b`` needs no node of its own, its reader gets one edge from each term; a coefficient other
than 1 becomes a ``Scale`` node on that edge. NIR has no concatenation, slicing or padding node:
each is a 1x1 (or offset, strided) convolution whose weight is 0 or 1, which copies values exactly.

NIR 1.0.8 infers a grouped convolution's input as ``weight.shape[1]`` channels, so a graph with
``groups > 1`` fails ``nir.read``'s type check; grouped convolutions (depthwise convs from average
pools, MobileNet) are written dense, block-diagonal with zeros, with ``metadata["snncal_groups"]``.
It also sizes a Conv2d's output from ``weight.shape[2]`` alone, so a non-square kernel is written
square, padded with zeros on both sides (:meth:`~snncal.core.export.nir_graph.NirBuilder._square`).

Semantics NIR's IF node cannot hold (reset by subtraction, initial potentials ``v0``, the firing rule
``v >= Vth``, the threshold shift) go into each IF node's ``metadata``, and one warning per export
says what a consumer that follows NIR's IF model will get wrong.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, fx

from snncal.core.engine import SpikingNetwork
from snncal.core.export.nir_graph import BATCH, ENCODING_NOTES, FIRING_RULE, READOUT, UNSUPPORTED, NirBuilder
from snncal.core.export.nir_ops import exporter
from snncal.core.files import atomic_write_bytes
from snncal.core.graph.trace import ConversionError
from snncal.core.neuron import IFNeuron

if TYPE_CHECKING:
    import nir

__all__ = [
    "export_nir",
]


# ----------------------------------------------------------------------------- public entry point
def export_nir(
    snn: SpikingNetwork,
    path: str | Path | None = None,
    input_shape: Sequence[int] | None = None,
    *,
    fold: bool = False,
    target: str | None = None,
) -> nir.NIRGraph:
    """The NIR graph of ``snn``; also written to ``path`` (HDF5, atomically) when it is given.

    Args:
        snn: a converted network.
        path: file to write with ``nir.write``, e.g. ``"net.nir"``.
        input_shape: one input without the batch dimension, e.g. ``[3, 32, 32]``; default: the
            shape recorded in the graph at conversion (``node.meta["tensor_meta"]``).
        fold: fold each neuron's threshold into the weights (:func:`snncal.core.export.fold.
            fold_thresholds`): every ``IF`` at threshold 1, no ``Scale`` nodes. Exact in real
            arithmetic; in float32 a rare spike lands one step apart, so it is off by default.
        target: the consumer to write for (:data:`snncal.core.export.peers.TARGETS`: ``"sinabs"``,
            ``"snntorch"``, ``"norse"``, ``"spikingjelly"``): folds, turns a time-dependent bias
            into an initial potential and a constant current (``fold_thresholds(static=True)``),
            and writes only the nodes every peer imports. Default: plain NIR.

    Returns:
        The ``nir.NIRGraph``: ``Input`` -> ... -> ``Output``, each neuron an ``IF`` node followed by
        a ``Scale`` node (spikes of height ``Vth``), snncal's neuron semantics in each IF node's
        ``metadata``. ``nir.read`` reads the file back with its type check on.

    Warns:
        UserWarning: once per export, what a consumer that follows NIR's IF model gets wrong for
            this network (reset by subtraction, initial potentials, threshold shift, ``v >= Vth``).

    Raises:
        ConversionError: an op NIR cannot express (one message naming the node, op and a way out).
        ValueError: no input shape was given and the graph does not record one.
    """
    import nir  # lazily: the rest of snncal works without it

    from snncal.core.export import fold as folding
    from snncal.core.export import peers

    spec = peers.target(target)
    shape = _input_shape(snn.graph, input_shape)
    if fold or spec.fold:
        snn = folding.fold_thresholds(snn, shape, static=spec.portable)
    gm = snn.graph
    values, dynamic = _propagate(gm, shape)
    builder = NirBuilder(nir, snn, values, dynamic)
    for node in gm.graph.nodes:
        _visit(builder, node)
    graph = peers.rewrite(nir, builder.graph(), spec, folded=fold or spec.fold)
    warnings.warn(_semantics_warning(snn), stacklevel=2)
    if path is not None:
        buffer = io.BytesIO()
        nir.write(buffer, graph)
        atomic_write_bytes(path, buffer.getvalue())
    return graph


def _semantics_warning(snn: SpikingNetwork) -> str:
    """What a consumer that follows NIR's IF model gets wrong when it runs ``snn``'s export."""
    neurons = list(snn.neurons().values())
    subtract = sum(n.reset == "subtract" for n in neurons)
    v0 = sum(bool(n.v0.ne(0).any()) for n in neurons)
    shift = sum(n.shift for n in neurons)
    stepped = sum(n.step_bias is not None for n in neurons)
    wrong = []
    if subtract:
        wrong.append(
            f"{subtract} of {len(neurons)} IF neurons reset by subtraction (v -= v_threshold), but "
            "NIR's IF resets to v_reset = 0, which drops the charge above threshold and lowers "
            "firing rates: a consumer that resets to zero will not reproduce this network"
        )
    if v0:
        wrong.append(
            f"{v0} IF neurons start from non-zero initial potentials (potential correction), for "
            "which NIR's IF has no field: a consumer starts them at 0 (the values are in each IF "
            "node's metadata['v0'])"
        )
    if shift:
        wrong.append(
            f"{shift} IF neurons add the threshold shift v_threshold / (2T) to their input at every "
            "step, which NIR does not express (metadata['bias_current'])"
        )
    if stepped:
        wrong.append(
            f"{stepped} IF neurons add a time-dependent bias (one current per step and channel), "
            "which NIR does not express (metadata['step_bias'], [steps, channels])"
        )
    wrong.append(
        f"snncal's neurons {FIRING_RULE}, in discrete steps (dt = 1, r = 1: charge, fire, reset) "
        f"with input encoding {ENCODING_NOTES[snn.encoding]}; {READOUT.format(T=snn.T)}"
    )
    return "NIR export: " + "; ".join(wrong) + ". See the IF nodes' metadata and docs/interop.md."


# ----------------------------------------------------------------------------- shape propagation
def _input_shape(gm: fx.GraphModule, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ConversionError(f"NIR export needs a network with one input, not {len(placeholders)}")
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    meta = placeholders[0].meta.get("tensor_meta")
    if meta is None:
        raise ValueError(
            "the graph records no input shape: pass input_shape (one input without the batch "
            "dimension, e.g. [3, 32, 32]) to export_nir"
        )
    return tuple(int(s) for s in meta.shape[1:])


class _PassThrough(fx.Interpreter):
    """Runs the graph on an example, keeping every value; a neuron passes its input through."""

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        if isinstance(self.submodules[target], IFNeuron):
            return args[0]
        return super().call_module(target, args, kwargs)


def _propagate(gm: fx.GraphModule, shape: tuple[int, ...]) -> tuple[dict[fx.Node, Any], set[fx.Node]]:
    """Every node's value on a zero input of batch ``BATCH``, and the nodes that depend on it."""
    ref = next((t for t in [*gm.parameters(), *gm.buffers()] if t.is_floating_point()), None)
    example = torch.zeros(
        BATCH, *shape, dtype=ref.dtype if ref is not None else torch.float32,
        device=ref.device if ref is not None else "cpu",
    )
    interp = _PassThrough(gm, garbage_collect_values=False)
    with torch.no_grad():
        interp.run(example)
    dynamic: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder" or any(a in dynamic for a in node.all_input_nodes):
            dynamic.add(node)
    return dict(interp.env), dynamic


def _visit(ex: NirBuilder, node: fx.Node) -> None:
    """Give ``node`` its NIR twin: the value it computes as a sum of NIR node outputs."""
    if node.op == "placeholder":
        shape = ex.shape(node)
        ex.sums[node] = ex.add("input", ex.nir.Input(input_type=np.array(shape)), {}, shape)
    elif node.op == "output":
        out = node.args[0]
        if not ex.is_spiking(out):
            raise ex.fail(node, "the network must return one tensor computed from its input")
        shape = ex.shape(out)
        ex.add("output", ex.nir.Output(output_type=np.array(shape)), ex.sums[out], shape)
    elif node in ex.dynamic and node.op != "get_attr":
        value = ex.values[node]
        if not isinstance(value, Tensor):
            if isinstance(value, (tuple, list)) and any(isinstance(v, Tensor) for v in value):
                raise ex.fail(node, "it returns several tensors; NIR values are single tensors")
            return  # a size or shape: read by reshapes, not a NIR value
        if value.dim() == 0 or value.shape[0] != BATCH:
            raise ex.fail(node, "its value does not keep the batch as its first dimension")
        export = exporter(ex, node)
        if export is None:
            raise ex.fail(node, UNSUPPORTED)
        ex.sums[node] = export(ex, node)
