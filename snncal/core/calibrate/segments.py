"""Segments: the linear ops (conv, add, pad, pool, ...) between the outputs of earlier neurons (or
the input) and one neuron's input current, and the conv/linear modules in them."""

from __future__ import annotations

from dataclasses import dataclass

from torch import fx, nn

from snncal.core.graph import SYNAPSES
from snncal.core.neuron import is_neuron

__all__ = ["Segment", "bias_synapse", "segments", "synapses"]


@dataclass
class Segment:
    """The ops that compute one neuron's input current from earlier neurons and the input."""

    neuron: fx.Node
    nodes: list[fx.Node]  # in graph order, ending with the neuron's input node
    inputs: list[fx.Node]  # neurons or placeholders read by ``nodes`` (or the neuron itself)

    @property
    def current(self) -> fx.Node:
        return self.neuron.args[0]


def segments(gm: fx.GraphModule) -> list[Segment]:
    """One :class:`Segment` per neuron, in graph order."""
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    found = []
    for neuron in gm.graph.nodes:
        if not is_neuron(gm, neuron):
            continue
        nodes, inputs, todo = set(), set(), [neuron.args[0]]
        while todo:
            n = todo.pop()
            if n.op == "placeholder" or is_neuron(gm, n):
                inputs.add(n)
            elif n not in nodes:
                nodes.add(n)
                todo.extend(n.all_input_nodes)
        found.append(Segment(neuron, sorted(nodes, key=order.get), sorted(inputs, key=order.get)))
    return found


def synapses(gm: fx.GraphModule, seg: Segment) -> list[nn.Module]:
    """The conv/linear modules of a segment, nearest to the neuron first."""
    mods = [gm.get_submodule(n.target) for n in reversed(seg.nodes) if n.op == "call_module"]
    return [m for m in mods if isinstance(m, SYNAPSES)]


def bias_synapse(gm: fx.GraphModule, seg: Segment) -> nn.Module | None:
    """The conv/linear whose output channels add 1:1 into the neuron's input, if there is one.

    Followed back through additions only, so a bias change shifts the neuron's input exactly.
    """
    todo = [seg.current]
    while todo:
        n = todo.pop(0)
        if n.op == "call_module" and isinstance(gm.get_submodule(n.target), SYNAPSES):
            return gm.get_submodule(n.target)
        if n in seg.nodes and n.op == "call_function" and getattr(n.target, "__name__", "") in (
            "add", "iadd"
        ):
            todo.extend(a for a in n.args if isinstance(a, fx.Node))
    return None
