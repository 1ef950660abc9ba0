"""The one multi-step engine: runs a converted graph for T steps with time folded into the batch.

Stateless ops see ``[steps * N, ...]`` and run once per chunk of time steps; only IF neurons unfold
to ``[steps, N, ...]`` and scan over time. Values that do not depend on time (the input image under
direct encoding and every op before the first neuron) are computed once and reused by every step
and chunk. Neuron state is a plain dict from neuron name to membrane potential, carried between
chunks, so memory is bounded by the chunk length, not by T.

A large batch runs as groups of images, each simulated for all T steps in chunks of
``SCAN_BLOCK`` steps: the time-folded batch is as large as before, but each neuron keeps the
potential of a few images only, which stays in cache, and scans a whole chunk in one pass.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from snncal.core.device import AMP, MAX_BATCH, auto_max_batch, autocast
from snncal.core.encoding import ENCODINGS, encode_input
from snncal.core.neuron import SCAN_BLOCK, IFNeuron, is_neuron

__all__ = [
    "ChunkSpec",
    "RunSpec",
    "SpikingNetwork",
    "changes_over_time",
    "residual_adds",
    "run_as_ann",
    "run_nodes",
    "simulate",
]


@dataclass(frozen=True)
class ChunkSpec:
    """What one chunk of a simulation runs: ``steps`` time steps from ``t0`` of a simulation of
    ``T``; whether the input is the same at every step (``static_input``: direct encoding); the
    residual adds handed to their neuron unsummed (``deferred``, see :func:`residual_adds`); and
    whether the stateless ops run under autocast (``amp``; neurons then get float32 inputs)."""

    steps: int
    T: int
    t0: int = 0
    static_input: bool = True
    deferred: frozenset[fx.Node] = frozenset()
    amp: bool = False


@dataclass(frozen=True)
class RunSpec:
    """A whole simulation of one group of images: ``T`` steps of input ``encoding``, in chunks of
    at most ``max_batch`` image-steps, stateless ops under autocast ``amp``; with ``every_step``,
    the running average at every step is returned."""

    T: int
    encoding: str = "direct"
    every_step: bool = False
    max_batch: int = MAX_BATCH
    amp: str = "off"
    deferred: frozenset[fx.Node] = frozenset()

    def chunk(self, t0: int, steps: int) -> ChunkSpec:
        """The spec of the chunk of ``steps`` steps from ``t0``."""
        return ChunkSpec(steps, self.T, t0, self.encoding == "direct", self.deferred, self.amp != "off")


def _repeat(x: Tensor, steps: int) -> Tensor:
    """``[N, ...]`` -> ``[steps * N, ...]`` (the same value at every step)."""
    return x.unsqueeze(0).expand(steps, *x.shape).reshape(steps * x.shape[0], *x.shape[1:])


def residual_adds(gm: fx.GraphModule) -> frozenset[fx.Node]:
    """``a + b`` nodes read only by a neuron: the engine hands ``a`` and ``b`` to the neuron, whose
    compiled step adds them in registers, instead of writing the sum out at every step."""
    adds = set()
    for n in gm.graph.nodes:
        users = list(n.users)
        if (
            n.op == "call_function" and n.target in (operator.add, torch.add) and not n.kwargs
            and len(n.args) == 2 and all(isinstance(a, fx.Node) for a in n.args)
            and len(users) == 1 and is_neuron(gm, users[0])
        ):
            adds.add(n)
    return frozenset(adds)


def changes_over_time(gm: fx.GraphModule, encoding: str) -> frozenset[fx.Node]:
    """The nodes of ``gm`` whose values differ from step to step, as the engine runs them: the input
    unless it is a constant current (``"direct"``), every neuron, and whatever reads one of those.
    The engine also reshapes a shape read (``x.size()``) of a constant value for the time-folded
    batch; that is bookkeeping, not a value that changes, and is not counted here."""
    temporal: set[fx.Node] = set()
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            changes = encoding != "direct"
        else:
            changes = is_neuron(gm, n) or any(a in temporal for a in n.all_input_nodes)
        if changes:
            temporal.add(n)
    return frozenset(temporal)


class _DeferredAdd(tuple):
    """A deferred ``a + b`` (see :func:`residual_adds`): ``(a, b)``, each ``[steps, N, ...]`` if
    it is temporal, else ``[N, ...]``."""


class _Chunk(fx.Interpreter):
    """Runs ``steps`` time steps of the graph; tracks which values are time-invariant (static)."""

    def __init__(
        self,
        gm: fx.GraphModule,
        spec: ChunkSpec,
        state: dict[str, Tensor],
        static: dict[fx.Node, tuple[Any, bool]],
        spike_counts: dict[str, Tensor] | None = None,
    ) -> None:
        super().__init__(gm)
        self.spec, self.state, self.static, self.spike_counts = spec, state, static, spike_counts
        self.temporal: set[fx.Node] = set()  # values that differ from step to step
        self.batched: set[fx.Node] = set()  # values with a batch dimension (not constants)

    @property
    def steps(self) -> int:
        """Time steps in this chunk."""
        return self.spec.steps

    def _load(self, node: fx.Node, expand: bool) -> Any:
        value = self.env[node]
        if expand and node in self.batched and node not in self.temporal:
            return _repeat(value, self.steps)
        return value

    def run_node(self, n: fx.Node) -> Any:
        if n in self.static:
            value, batched = self.static[n]
            if batched:
                self.batched.add(n)
            return value
        inputs = n.all_input_nodes
        temporal = any(a in self.temporal for a in inputs)
        batched = n.op == "placeholder" or any(a in self.batched for a in inputs)
        if n.op == "placeholder":
            temporal = not self.spec.static_input
        neuron = is_neuron(self.module, n)
        is_shape = n.target in ("size", "shape") or (n.op == "call_function" and n.target is getattr)
        defer = temporal and n in self.spec.deferred and self._summable(n)
        expand = temporal and not neuron and not defer
        args = fx.node.map_arg(n.args, lambda a: self._load(a, expand))
        kwargs = fx.node.map_arg(n.kwargs, lambda a: self._load(a, expand))
        if defer:
            out = _DeferredAdd(self._unfold(value, a in self.temporal) for a, value in zip(n.args, args))
        elif neuron:
            out = self._neuron(n.target, args[0], temporal)
            temporal = True
        elif is_shape and batched and not temporal:
            out = self._shape_as_temporal(n, args, kwargs)
            temporal = True
        else:
            out = getattr(self, n.op)(n.target, args, kwargs)
        if temporal:
            self.temporal.add(n)
        elif n.op != "output":
            self.static[n] = (out, batched)
        if batched:
            self.batched.add(n)
        return out

    def _shape_as_temporal(self, n: fx.Node, args: tuple, kwargs: dict) -> Any:
        """``x.size()`` of a static ``[N, ...]`` value, as the ``[steps * N, ...]`` value sees it."""
        x = args[0]
        if isinstance(x, Tensor):
            args = (x[:1].expand(self.steps * x.shape[0], *x.shape[1:]), *args[1:])
        return getattr(self, n.op)(n.target, args, kwargs)

    def _summable(self, n: fx.Node) -> bool:
        a, b = (self.env[arg] for arg in n.args)
        return (
            isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape[1:] == b.shape[1:]
            and a.dtype == b.dtype and all(arg in self.batched for arg in n.args)
        )

    def _unfold(self, x: Tensor, temporal: bool) -> Tensor:
        return x.view(self.steps, -1, *x.shape[1:]) if temporal else x

    def _neuron(self, name: str, x: Tensor | _DeferredAdd, temporal: bool) -> Tensor:
        if self.spec.amp:  # the membrane potential and the scan stay in float32
            with torch.autocast(_device_of(x).type, enabled=False):
                return self._scan(name, _float32(x), temporal)
        return self._scan(name, x, temporal)

    def _scan(self, name: str, x: Tensor | _DeferredAdd, temporal: bool) -> Tensor:
        neuron: IFNeuron = self.submodules[name]
        x, residual = x if isinstance(x, _DeferredAdd) else (self._unfold(x, temporal), None)
        v = self.state.get(name)
        if v is None:
            one = x if residual is None or residual.dim() < x.dim() else residual
            v = neuron.init_state(one[0] if temporal else one)
        out, self.state[name] = neuron.scan(x, v, self.steps, self.spec.T, residual, t0=self.spec.t0)
        if self.spike_counts is not None:
            count = out.ne(0).sum((0, 1), dtype=torch.float64)
            self.spike_counts[name] = self.spike_counts.get(name, 0) + count
        return out.flatten(0, 1)

    def output(self, target: Any, args: tuple, kwargs: dict) -> Any:
        (y,) = args
        if not isinstance(y, Tensor):
            raise TypeError("a SpikingNetwork must return a single tensor of logits")
        return y


def _device_of(x: Tensor | _DeferredAdd) -> torch.device:
    return x[0].device if isinstance(x, _DeferredAdd) else x.device


def _float32(x: Tensor | _DeferredAdd) -> Tensor | _DeferredAdd:
    """A neuron's input current(s) in float32 (autocast leaves conv outputs in half precision)."""
    return _DeferredAdd(v.float() for v in x) if isinstance(x, _DeferredAdd) else x.float()


def run_nodes(
    gm: fx.GraphModule,
    nodes: Sequence[fx.Node],
    values: dict[fx.Node, Tensor],
    *,
    steps: int = 1,
    T: int | None = None,
    temporal: Iterable[fx.Node] = (),
    state: dict[str, Tensor] | None = None,
) -> tuple[dict[fx.Node, Any], frozenset[fx.Node]]:
    """Run ``nodes`` of the spiking graph ``gm``, in order, for ``steps`` time steps of ``T``.

    ``values`` are the inputs of ``nodes`` computed elsewhere: ``[steps * N, ...]`` for the
    ``temporal`` ones (a value per step, time folded into the batch), ``[N, ...]`` for the others.
    Neurons among ``nodes`` scan from the potentials in ``state`` (by neuron name; zero-state
    neurons start from ``v0``) and leave theirs there. Returns every value by node, and the nodes
    whose values are temporal.
    """
    engine = _Chunk(gm, ChunkSpec(steps, T or steps), {} if state is None else state, {})
    engine.env, engine.temporal, engine.batched = dict(values), set(temporal), set(values)
    for n in nodes:
        engine.env[n] = engine.run_node(n)
    return engine.env, frozenset(engine.temporal)


def simulate(
    gm: fx.GraphModule,
    x: Tensor,
    T: int,
    *,
    every_step: bool = False,
    encoding: str = "direct",
    max_batch: int | None = None,
    generator: torch.Generator | None = None,
    spike_counts: dict[str, Tensor] | None = None,
    amp: str = "off",
) -> Tensor:
    """Run the spiking graph ``gm`` on input ``x`` ``[N, ...]`` for ``T`` steps.

    Args:
        gm: converted graph whose activations are :class:`IFNeuron` modules.
        x: input batch, fed as a constant current (``"direct"``) or as Poisson spikes.
        T: number of time steps.
        every_step: also return the running average at every step.
        encoding: ``"direct"``, ``"poisson"`` or ``"switch"``
            (see :func:`~snncal.core.encoding.encode_input`).
        max_batch: largest time-folded batch ``steps * images``: images run in groups of
            ``max_batch // min(T, SCAN_BLOCK)``, each for ``T`` steps in chunks of
            ``max_batch // group`` steps, which bounds memory whatever ``T`` is (``None``:
            :func:`~snncal.core.device.auto_max_batch` of ``x``'s device).
        generator: random source for Poisson encoding.
        spike_counts: if given, each neuron's spikes are added to ``spike_counts[name]``, one count
            per element ``[C, ...]``, summed over images and steps (firing rates, synaptic ops).
        amp: ``"bfloat16"`` or ``"float16"`` runs the stateless ops (conv, linear, ...) under
            ``torch.autocast`` to that dtype; membrane potentials, the neuron scan and the
            output's running sum stay float32. ``"off"``: float32 throughout.

    Returns:
        Output averaged over the ``T`` steps, ``[N, ...]``; with ``every_step``, the running
        averages ``[T, N, ...]`` whose entry ``t - 1`` is the output a simulation of ``t`` steps gives.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an integer >= 1, got {T!r}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if amp not in AMP:
        raise ValueError(f"amp must be one of {', '.join(AMP)}, got {amp!r}")
    spec = RunSpec(T, encoding, every_step, max_batch or auto_max_batch(x.device), amp, residual_adds(gm))
    group = max(1, spec.max_batch // min(T, SCAN_BLOCK))
    outs = [
        _simulate_group(gm, x[i : i + group], spec, generator, spike_counts)
        for i in range(0, max(1, x.shape[0]), group)
    ]
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1 if every_step else 0)


def _simulate_group(
    gm: fx.GraphModule,
    x: Tensor,
    spec: RunSpec,
    generator: torch.Generator | None = None,
    spike_counts: dict[str, Tensor] | None = None,
) -> Tensor:
    """:func:`simulate` of one group of images, in chunks of time steps that carry the state."""
    T = spec.T
    chunk = max(1, min(T, spec.max_batch // max(1, x.shape[0])))
    state: dict[str, Tensor] = {}
    static: dict[fx.Node, tuple[Any, bool]] = {}
    total, history = None, []
    for t0 in range(0, T, chunk):
        steps = min(chunk, T - t0)
        inp = encode_input(x, spec.encoding, t0, steps, T, generator)
        engine = _Chunk(gm, spec.chunk(t0, steps), state, static, spike_counts)
        with autocast(x.device, spec.amp):
            y = engine.run(inp)
        y = y if spec.amp == "off" else y.float()
        y = y.view(steps, x.shape[0], *y.shape[1:]) if y.shape[0] == steps * x.shape[0] else (
            y.unsqueeze(0).expand(steps, *y.shape)
        )
        # one left-to-right running sum, so chunked and unchunked runs round identically
        cum = y.cumsum(0) if total is None else torch.cat([total[None], y]).cumsum(0)[1:]
        total = cum[-1]
        if spec.every_step:
            history.append(cum / torch.arange(t0 + 1, t0 + steps + 1, device=y.device).view(
                -1, *([1] * (y.dim() - 1))))
    return torch.cat(history) if spec.every_step else total / T


class _AnnView(fx.Interpreter):
    """Runs the spiking graph as the ANN it came from: each neuron acts as its ReLU."""

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        mod = self.submodules[target]
        if isinstance(mod, IFNeuron):
            return mod.relu(args[0])
        return super().call_module(target, args, kwargs)


def run_as_ann(gm: fx.GraphModule, x: Tensor) -> Tensor:
    """The ANN output of a spiking graph (neurons replaced by their ReLU)."""
    return _AnnView(gm).run(x)


class SpikingNetwork(nn.Module):
    """A converted spiking network: the graph, its default ``T`` and input encoding.

    All state is named tensors: neuron thresholds and initial potentials are buffers of the graph
    (``state_dict()`` keys such as ``layer1.0.relu.threshold``), named after the ANN's activations.
    ``max_batch`` ``None`` follows the input's device (:func:`~snncal.core.device.auto_max_batch`);
    ``amp`` names the autocast dtype of the stateless ops (see :func:`simulate`).
    """

    def __init__(
        self,
        graph: fx.GraphModule,
        T: int,
        encoding: str = "direct",
        max_batch: int | None = None,
        amp: str = "off",
    ) -> None:
        super().__init__()
        self.graph = graph
        self.T, self.encoding, self.max_batch, self.amp = T, encoding, max_batch, amp
        self.calibration = None  # CalibrationReport of the conversion, if any

    def neurons(self) -> dict[str, IFNeuron]:
        """Neurons in graph order, by module name."""
        gm = self.graph
        return {n.target: gm.get_submodule(n.target) for n in gm.graph.nodes if is_neuron(gm, n)}

    @torch.no_grad()
    def simulate(self, x: Tensor, T: int | None = None, every_step: bool = False) -> Tensor:
        """Output averaged over ``T`` steps (default ``self.T``); see :func:`simulate`. Inputs of
        another floating dtype are cast to the network's float32."""
        if x.is_floating_point() and x.dtype != torch.float32:
            x = x.float()
        return simulate(
            self.graph, x, self.T if T is None else T, every_step=every_step, encoding=self.encoding,
            max_batch=self.max_batch, amp=self.amp,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits averaged over ``self.T`` steps."""
        return self.simulate(x)

    @torch.no_grad()
    def ann(self, x: Tensor) -> Tensor:
        """This graph run as an ANN (each neuron as its ReLU). Before calibration it is the converted
        ANN (BN folded); calibration changes weights and biases, so afterwards it is not."""
        return run_as_ann(self.graph, x)
