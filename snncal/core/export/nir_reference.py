"""A reference NIR consumer: runs an exported graph step by step, as docs/interop.md says a consumer
should, so that an export can be checked against ``snn.simulate`` (tests/test_nir.py,
benchmarks/nir_zoo.py). Plain PyTorch, one node at a time: a check, not a simulator.

``nir`` is imported only when a graph is run; the rest of snncal does not need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    import nir

__all__ = [
    "run_nir",
]


def _order(graph: nir.NIRGraph) -> list[str]:
    """Nodes in an order where every edge goes forward (Kahn)."""
    indeg = {k: 0 for k in graph.nodes}
    for _, dst in graph.edges:
        indeg[dst] += 1
    ready, order = [k for k, d in indeg.items() if d == 0], []
    while ready:
        name = ready.pop()
        order.append(name)
        for src, dst in graph.edges:
            if src == name:
                indeg[dst] -= 1
                if indeg[dst] == 0:
                    ready.append(dst)
    if len(order) != len(graph.nodes):
        raise ValueError("the NIR graph has a cycle")
    return order


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a))


def _layer(node: nir.NIRNode, x: torch.Tensor) -> torch.Tensor:
    """One stateless NIR node on a batch ``[N, ...]``."""
    import nir

    if isinstance(node, nir.Conv2d | nir.Conv1d):
        conv = F.conv2d if isinstance(node, nir.Conv2d) else F.conv1d
        stride, padding, dilation = (tuple(int(v) for v in np.atleast_1d(a))
                                     for a in (node.stride, node.padding, node.dilation))
        return conv(x, _t(node.weight), _t(node.bias), stride, padding, dilation, int(node.groups))
    if isinstance(node, nir.Affine):
        return F.linear(x, _t(node.weight), _t(node.bias))
    if isinstance(node, nir.Linear):
        return F.linear(x, _t(node.weight))
    if isinstance(node, nir.AvgPool2d | nir.SumPool2d):
        k, s, p = (tuple(int(v) for v in a) for a in (node.kernel_size, node.stride, node.padding))
        div = 1 if isinstance(node, nir.SumPool2d) else None
        return F.avg_pool2d(x, k, s, p, divisor_override=div)
    if isinstance(node, nir.Flatten):
        end = int(node.end_dim)
        return x.flatten(int(node.start_dim) + 1, end if end < 0 else end + 1)
    if isinstance(node, nir.Scale):
        return x * _t(node.scale)
    if isinstance(node, nir.Output):
        return x
    raise NotImplementedError(type(node).__name__)


def run_nir(graph: nir.NIRGraph, x: torch.Tensor, steps: int, snncal_semantics: bool = False) -> torch.Tensor:
    """Run ``graph`` for ``steps`` discrete steps (dt = 1) on the constant input ``x``; the Output
    averaged over the steps. Each node reads the sum of its incoming edges at the same step. IF:
    charge ``v += I``, fire ``v >= v_threshold``, reset to ``v_reset`` (NIR), or, with
    ``snncal_semantics``, as the IF node's metadata says (reset by subtraction, ``v0``, bias)."""
    import nir

    order = _order(graph)
    preds = {k: [src for src, dst in graph.edges if dst == k] for k in graph.nodes}
    (out_name,) = graph.outputs
    v: dict[str, torch.Tensor] = {}
    total = 0.0
    for _ in range(steps):
        out: dict[str, torch.Tensor] = {}
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                out[name] = x
                continue
            current = sum(out[p] for p in preds[name])
            if not isinstance(node, nir.IF):
                out[name] = _layer(node, current)
                continue
            meta = node.metadata if snncal_semantics else {}
            if name not in v:
                v[name] = torch.zeros_like(current) + _t(meta.get("v0", 0.0))
            v[name] = v[name] + current + _t(meta.get("bias_current", 0.0))
            vth = _t(node.v_threshold)
            spike = v[name] >= vth
            if meta.get("reset") == "subtract":
                v[name] = v[name] - spike * vth
            else:
                v[name] = torch.where(spike, _t(node.v_reset).expand_as(v[name]), v[name])
            out[name] = spike.to(x.dtype)
        total = total + out[out_name]
    return total / steps
