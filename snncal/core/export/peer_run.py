"""Run an exported NIR graph in another simulator, with that simulator's own importer and neurons.

:func:`run_peer` imports a graph written with ``export_nir(..., target=name)`` into sinabs,
snnTorch, Norse or SpikingJelly and runs ``T`` steps of direct input (the image as a constant
current), returning the output averaged over the steps, as ``SpikingNetwork.simulate`` does. With
``match=True`` it sets, on the imported modules, what each peer lets a user set and NIR cannot say
(docs/interop.md): single spikes and no clamp in sinabs, no leak in snnTorch, reset by subtraction
in SpikingJelly, the initial potentials ``metadata["v0"]`` (not in Norse, whose executor
keeps its own state), a batch-keeping ``Flatten`` where an importer flattens the batch, and, for
the peers that run nirtorch's ``GraphExecutor`` (sinabs, Norse), an execution order in which every
node runs after its inputs (the executor's own order is depth-first, docs/interop.md). The peers
are imported lazily; none is a dependency of snncal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["PEERS", "import_peer", "run_peer"]

PEERS = ("sinabs", "snntorch", "norse", "spikingjelly")


def _if_nodes(graph: Any) -> dict[str, Any]:
    import nir

    return {k: n for k, n in graph.nodes.items() if isinstance(n, nir.IF)}


def _v0(node: Any, n: int) -> Tensor:
    v0 = torch.as_tensor(np.asarray(node.metadata.get("v0", 0.0)), dtype=torch.float32)
    shape = tuple(int(s) for s in np.asarray(node.v_threshold).shape)
    return v0.expand(shape).unsqueeze(0).expand(n, *shape).clone()


def _keep_batch(model: nn.Module) -> None:
    """NIR's ``Flatten(start_dim=0)`` counts dims without the batch; some importers pass it to
    ``nn.Flatten`` as is, which flattens the batch too."""
    for m in model.modules():
        if isinstance(m, nn.Flatten) and m.start_dim == 0:
            m.start_dim = 1


def _inputs_first(model: nn.Module) -> None:
    """Put nirtorch's ``GraphExecutor`` nodes in topological order. It lists them depth first
    from the input, so where a branch joins (a residual add, a concatenation) the join may run
    before the branch, reading the branch's output of the previous step (or none), and the last
    node listed, whose output it returns, may be the branch instead of the classifier."""
    from graphlib import TopologicalSorter

    order = model.execution_order
    inputs = {node: set(model.graph.find_source_nodes_of(node)) & set(order) for node in order}
    model.execution_order = list(TopologicalSorter(inputs).static_order())


def import_peer(name: str, graph: Any, batch: int, T: int, match: bool = True) -> nn.Module:
    """``graph`` imported by the peer ``name`` (see the module doc for ``match``)."""
    if name == "sinabs":
        import sinabs

        model = sinabs.from_nir(graph, batch_size=batch, num_timesteps=None)
        if match:
            _inputs_first(model)
        return model
    if name == "snntorch":
        from snntorch.import_nir import import_from_nir

        model = import_from_nir(graph)
        if match:
            import snntorch

            _keep_batch(model)
            for m in model.modules():
                if isinstance(m, snntorch.Leaky):
                    m.beta = torch.tensor(1.0)  # the importer's beta = 0.9 is a leak IF lacks
                    m.init_hidden = True  # (spk, mem) tuples otherwise reach the next layer
        return model
    if name == "norse":
        import norse.torch as norse

        model = norse.from_nir(graph, dt=1.0)
        if match:
            _keep_batch(model)
            _inputs_first(model)
        return model
    if name == "spikingjelly":
        from spikingjelly.activation_based import neuron
        from spikingjelly.activation_based.nir_exchange import import_from_nir

        model = import_from_nir(graph, dt=1.0)
        if match:
            for m in model.modules():
                if isinstance(m, neuron.IFNode):
                    m.v_reset = None  # reset by subtraction ("soft reset")
        return model
    raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")


def run_peer(name: str, graph: Any, x: Tensor, T: int, match: bool = True) -> Tensor:
    """The peer's output for input ``x`` ``[N, ...]`` averaged over ``T`` steps."""
    n = x.shape[0]
    model = import_peer(name, graph, n, T, match)
    neurons = _if_nodes(graph)
    with torch.no_grad():
        if name == "sinabs":
            return _run_sinabs(model, neurons, x, T, match)
        if name == "snntorch":
            return _run_snntorch(model, neurons, x, T, match)
        if name == "spikingjelly":
            return _run_stateful(model, x, T, _spikingjelly_state(model, neurons, n) if match else None)
        return _run_stateful(model, x, T, None)  # Norse's executor state: its IAF starts at v = 0


def _modules_named(model: nn.Module, names: dict[str, Any]) -> dict[str, nn.Module]:
    mods = dict(model.named_modules())
    return {k: mods[k] for k in names if k in mods}


def _run_sinabs(model: nn.Module, neurons: dict, x: Tensor, T: int, match: bool) -> Tensor:
    from sinabs.activation import SingleSpike

    n = x.shape[0]
    for key, layer in _modules_named(model, neurons).items():
        if match:
            layer.spike_fn, layer.min_v_mem = SingleSpike, None
            layer.init_state_with_shape((n, *neurons[key].v_threshold.shape))
            layer.v_mem.copy_(_v0(neurons[key], n))
    xs = x.unsqueeze(1).expand(n, T, *x.shape[1:]).reshape(n * T, *x.shape[1:])  # (batch x time)
    out = model(xs)
    out = out[0] if isinstance(out, tuple) else out
    return out.reshape(n, T, *out.shape[1:]).mean(1)


def _run_snntorch(model: nn.Module, neurons: dict, x: Tensor, T: int, match: bool) -> Tensor:
    n = x.shape[0]
    for key, layer in _modules_named(model, neurons).items():
        layer.mem = _v0(neurons[key], n) if match else torch.zeros(0)
    total = 0.0
    for _ in range(T):
        out = model(x)
        total = total + (out[0] if isinstance(out, tuple) else out)
    return total / T


def _run_stateful(model: nn.Module, x: Tensor, T: int, state: Any) -> Tensor:
    total = 0.0
    for _ in range(T):
        out, state = model(x, state)
        total = total + out
    return total / T


def _spikingjelly_state(model: nn.Module, neurons: dict, n: int) -> Any:
    """SpikingJelly's state per neuron: its membrane potential ``v`` from ``metadata["v0"]``."""
    return {key: (_v0(node, n),) for key, node in neurons.items()}
