"""What each NIR consumer runs best: the export targets and the graph rewrites they need.

Every peer's importer reads a different subset of NIR. The subset they all read is ``Input``,
``Conv2d``, ``Affine``, ``Flatten``, ``IF`` and ``Output``, so a *portable* export writes only those:

    AvgPool2d(k) / SumPool2d(k)  ->  Conv2d with a diagonal k x k kernel of 1/|k| (or 1), written dense
    Linear(W)                    ->  Affine(W, 0)
    Scale(s), s per channel      ->  1x1 Conv2d with a diagonal weight (Affine for vectors)
    Scale(1)                     ->  nothing (the edges pass through)

and a peer target also folds the thresholds (:mod:`snncal.core.export.fold`), so that every ``IF``
has ``v_threshold = 1`` and emits the spikes the next layer reads: no ``Scale`` after neurons,
which sinabs and Norse cannot import, and one threshold per layer, which snnTorch and SpikingJelly
require. docs/interop.md lists, per peer, what it runs differently and how close it gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TARGETS", "Target", "drop_unit_scales", "portable", "rewrite", "target"]


@dataclass(frozen=True)
class Target:
    """How to write the NIR file for one consumer.

    Attributes:
        name: the ``--target`` name.
        fold: fold thresholds into the weights (every ``IF`` at threshold 1, no ``Scale`` nodes).
        portable: write only nodes every peer imports (see the module doc).
        loads: how the peer reads the file.
        approximates: one line: what the peer runs differently from snncal, as imported.
    """

    name: str
    fold: bool
    portable: bool
    loads: str
    approximates: str


_ORDER = ("nirtorch's GraphExecutor runs a residual or concatenating graph depth first and returns a "
          "branch's output (sort model.execution_order topologically after import)")
_V0 = (
    "initial potentials (potential correction) are not in NIR: set v0 in the peer's state from "
    "metadata['v0'], or they start at 0; a time-dependent bias (tbias) becomes a kick added to v0 "
    "and a constant current (a line fitted to its running sum)"
)
TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("nir", False, False, "nir.read",
               "nothing for a consumer that follows each IF node's metadata (reset, v0, bias, v >= Vth); "
               "a plain NIR IF resets to 0 and starts at 0"),
        Target("sinabs", True, True, "sinabs.from_nir(graph, batch_size=N)",
               "sinabs's IAFSqueeze emits several spikes per step (MultiSpike) and clamps v at -Vth "
               "unless spike_fn=SingleSpike and min_v_mem=None are set after import; " + _ORDER + "; " + _V0),
        Target("snntorch", True, True, "snntorch.import_nir.import_from_nir(graph)",
               "snnTorch 1.0.0 imports IF as Leaky(beta=0.9), a leak (set beta = 1 after import), "
               "fires at v > 1 instead of v >= 1, and its Flatten(0, -1) flattens the batch "
               "(set start_dim = 1); " + _V0),
        Target("norse", True, True, "norse.torch.from_nir(graph, dt=1.0)",
               "Norse's IAF resets to v_reset = 0 (no reset by subtraction) and fires at v > 1; " + _ORDER
               + "; " + _V0),
        Target("spikingjelly", True, True,
               "spikingjelly.activation_based.nir_exchange.import_from_nir(graph, dt=1.0)",
               "SpikingJelly's IFNode resets to v_reset = 0 as NIR says (set v_reset = None for "
               "reset by subtraction after import); " + _V0),
    )
}


def target(name: str | None) -> Target:
    """The target called ``name`` (``None``: plain NIR, ``"nir"``)."""
    name = name or "nir"
    if name not in TARGETS:
        raise ValueError(f"unknown NIR export target {name!r}; known: {', '.join(TARGETS)}")
    return TARGETS[name]


def rewrite(nir: Any, graph: Any, spec: Target, folded: bool) -> Any:
    """``graph`` as ``spec`` wants it: unit ``Scale`` nodes dropped when folded, portable nodes."""
    if folded:
        graph = drop_unit_scales(nir, graph)
    if spec.portable:
        graph = portable(nir, graph)
    return graph


def drop_unit_scales(nir: Any, graph: Any) -> Any:
    """``Scale`` nodes that multiply by 1 removed; their inputs feed their readers directly."""
    unit = {
        k for k, n in graph.nodes.items() if isinstance(n, nir.Scale) and np.all(np.asarray(n.scale) == 1)
    }
    if not unit:
        return graph
    into = {k: [s for s, d in graph.edges if d == k] for k in unit}
    edges = []
    for src, dst in graph.edges:
        if dst in unit:
            continue
        edges += [(s, dst) for s in into[src]] if src in unit else [(src, dst)]
    nodes = {k: n for k, n in graph.nodes.items() if k not in unit}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata)


def portable(nir: Any, graph: Any) -> Any:
    """Pools as convs, ``Linear`` as ``Affine``, per-channel ``Scale`` as diagonal 1x1 convs."""
    nodes = {k: _portable_node(nir, n) for k, n in graph.nodes.items()}
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=graph.metadata)


def _portable_node(nir: Any, node: Any) -> Any:
    meta = dict(getattr(node, "metadata", {}) or {})
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        shape = tuple(int(s) for s in node.input_type["input"])
        k = tuple(int(v) for v in node.kernel_size)
        c = shape[0]
        weight = np.zeros((c, c, *k), dtype=np.float32)
        weight[np.arange(c), np.arange(c)] = 1.0 / np.prod(k) if isinstance(node, nir.AvgPool2d) else 1.0
        meta["snncal_pool"] = type(node).__name__
        return nir.Conv2d(input_shape=shape[1:], weight=weight, stride=tuple(int(v) for v in node.stride),
                          padding=tuple(int(v) for v in node.padding), dilation=(1, 1), groups=1,
                          bias=np.zeros(c, dtype=np.float32), metadata=meta)
    if isinstance(node, nir.Linear):
        w = np.asarray(node.weight, dtype=np.float32)
        return nir.Affine(weight=w, bias=np.zeros(w.shape[0], dtype=np.float32), metadata=meta)
    if isinstance(node, nir.Scale):
        return _diagonal(nir, np.asarray(node.scale, dtype=np.float32), meta) or node
    return node


def _diagonal(nir: Any, scale: np.ndarray, meta: dict) -> Any:
    """A Scale that is one factor per channel as a diagonal Affine or 1x1 Conv2d; ``None`` if it
    varies along space."""
    c = scale.shape[0] if scale.ndim else 1
    per = scale.reshape(c, -1)
    if not np.all(per == per[:, :1]):
        return None
    diag = np.diag(per[:, 0]).astype(np.float32)
    bias = np.zeros(c, dtype=np.float32)
    if scale.ndim <= 1:
        return nir.Affine(weight=diag, bias=bias, metadata=meta)
    if scale.ndim == 3:
        return nir.Conv2d(input_shape=scale.shape[1:], weight=diag[:, :, None, None], stride=(1, 1),
                          padding=(0, 0), dilation=(1, 1), groups=1, bias=bias, metadata=meta)
    return nir.Conv1d(input_shape=scale.shape[1], weight=diag[:, :, None], stride=1, padding=0,
                      dilation=1, groups=1, bias=bias, metadata=meta)
