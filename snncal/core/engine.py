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

import contextlib
import functools
import operator
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, fx, nn

from snncal.core.neuron import SCAN_BLOCK, IFNeuron, is_neuron

__all__ = [
    "AMP",
    "ENCODINGS",
    "MAX_BATCH",
    "SpikingNetwork",
    "auto_max_batch",
    "autocast",
    "cuda_max_batch",
    "encode",
    "poisson",
    "residual_adds",
    "run_ann",
    "run_nodes",
    "simulate",
    "switch",
]

ENCODINGS = ("direct", "poisson", "switch")
MAX_BATCH = 64  # time-folded batch (steps x images) on a CPU: keeps its caches warm
# GPU memory an image-step may hold: VGG-16 at 224 x 224, the zoo's largest activations, keeps
# two 64 x 224 x 224 float tensors (12.8 MB each) live in its first block, plus conv workspace.
CUDA_BYTES_PER_STEP = 32 << 20
# Bounds of the automatic value on CUDA. 2048 (a chunk of 64 images x 32 steps) already gives a
# ResNet-20 layer 33M elements per op, ~100 x the threads an H200 keeps resident.
CUDA_MAX_BATCH = (256, 2048)
AMP = {"off": None, "bfloat16": torch.bfloat16, "float16": torch.float16}  # autocast dtypes


def auto_max_batch(device: torch.device | str) -> int:
    """The default time-folded batch on ``device``: :data:`MAX_BATCH` (64) off CUDA; on CUDA the
    largest power of two whose image-steps fit the GPU's memory at :data:`CUDA_BYTES_PER_STEP`,
    within :data:`CUDA_MAX_BATCH`: 2048 from 80 GB, 1024 at 40 GB, 512 at 24 GB, 256 below."""
    device = torch.device(device)
    if device.type != "cuda":
        return MAX_BATCH
    return cuda_max_batch(_cuda_memory(device.index))


def cuda_max_batch(total_memory: int) -> int:
    """:func:`auto_max_batch` of a GPU with ``total_memory`` bytes."""
    low, high = CUDA_MAX_BATCH
    fit = max(1, total_memory // CUDA_BYTES_PER_STEP)
    return min(high, max(low, 1 << (fit.bit_length() - 1)))


@functools.cache
def _cuda_memory(index: int | None) -> int:
    index = torch.cuda.current_device() if index is None else index
    return torch.cuda.get_device_properties(index).total_memory


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to the dtype ``amp`` names on ``device`` (a no-op for ``"off"``)."""
    if AMP[amp] is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP[amp])


def _repeat(x: Tensor, steps: int) -> Tensor:
    """``[N, ...]`` -> ``[steps * N, ...]`` (the same value at every step)."""
    return x.unsqueeze(0).expand(steps, *x.shape).reshape(steps * x.shape[0], *x.shape[1:])


def poisson(x: Tensor, steps: int, generator: torch.Generator | None = None) -> Tensor:
    """Rate-coded input ``[steps * N, ...]``: spikes of height ``max|x|`` (per sample) whose mean is x."""
    scale = _scale(x)
    p = (x.abs() / scale).expand(steps, *x.shape)
    fire = torch.rand(p.shape, generator=generator, device=x.device, dtype=x.dtype) < p
    return (fire * (torch.sign(x) * scale)).reshape(steps * x.shape[0], *x.shape[1:])


def switch(x: Tensor, t0: int, steps: int, T: int) -> Tensor:
    """Temporal-switch-coded input (Han & Roy 2020) for steps ``t0 .. t0 + steps - 1`` of ``T``,
    ``[steps * N, ...]``: each element is switched on at step 0 (at height ``max|x|`` per sample,
    with its sign) and off after ``round(T |x| / max|x|)`` steps, so its mean over ``T`` is ~x."""
    scale = _scale(x)
    on_steps = torch.round(x.abs() / scale * T)
    t = torch.arange(t0, t0 + steps, device=x.device).view(-1, *([1] * x.dim()))
    return ((t < on_steps) * (torch.sign(x) * scale)).reshape(steps * x.shape[0], *x.shape[1:])


def _scale(x: Tensor) -> Tensor:
    return x.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))


def encode(
    x: Tensor, encoding: str, t0: int, steps: int, T: int, generator: torch.Generator | None = None
) -> Tensor:
    """The input as the network sees it at steps ``t0 .. t0 + steps - 1`` of ``T``: ``x`` itself
    (``"direct"``: a constant current), or spikes ``[steps * N, ...]`` (``"poisson"``, ``"switch"``)."""
    if encoding == "direct":
        return x
    if encoding == "poisson":
        return poisson(x, steps, generator)
    if encoding == "switch":
        return switch(x, t0, steps, T)
    raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")


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


class _Sum(tuple):
    """A deferred ``a + b`` (see :func:`residual_adds`): ``(a, b)``, each ``[steps, N, ...]`` if
    it is temporal, else ``[N, ...]``."""


class _Chunk(fx.Interpreter):
    """Runs ``steps`` time steps of the graph; tracks which values are time-invariant (static)."""

    def __init__(
        self,
        gm: fx.GraphModule,
        steps: int,
        T: int,
        state: dict[str, Tensor],
        static: dict[fx.Node, tuple[Any, bool]],
        static_input: bool,
        spike_counts: dict[str, Tensor] | None = None,
        deferred: frozenset[fx.Node] = frozenset(),
        amp: bool = False,
        t0: int = 0,
    ) -> None:
        super().__init__(gm)
        self.steps, self.T, self.state, self.static, self.t0 = steps, T, state, static, t0
        self.static_input, self.spike_counts, self.deferred = static_input, spike_counts, deferred
        self.amp = amp  # stateless ops run under autocast; neurons get float32 inputs
        self.temporal: set[fx.Node] = set()  # values that differ from step to step
        self.batched: set[fx.Node] = set()  # values with a batch dimension (not constants)

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
            temporal = not self.static_input
        neuron = is_neuron(self.module, n)
        is_shape = n.target in ("size", "shape") or (n.op == "call_function" and n.target is getattr)
        defer = temporal and n in self.deferred and self._summable(n)
        expand = temporal and not neuron and not defer
        args = fx.node.map_arg(n.args, lambda a: self._load(a, expand))
        kwargs = fx.node.map_arg(n.kwargs, lambda a: self._load(a, expand))
        if defer:
            out = _Sum(self._unfold(value, a in self.temporal) for a, value in zip(n.args, args))
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

    def _neuron(self, name: str, x: Tensor | _Sum, temporal: bool) -> Tensor:
        if self.amp:  # the membrane potential and the scan stay in float32
            with torch.autocast(_device_of(x).type, enabled=False):
                return self._scan(name, _float32(x), temporal)
        return self._scan(name, x, temporal)

    def _scan(self, name: str, x: Tensor | _Sum, temporal: bool) -> Tensor:
        neuron: IFNeuron = self.submodules[name]
        x, residual = x if isinstance(x, _Sum) else (self._unfold(x, temporal), None)
        v = self.state.get(name)
        if v is None:
            one = x if residual is None or residual.dim() < x.dim() else residual
            v = neuron.init_state(one[0] if temporal else one)
        out, self.state[name] = neuron.scan(x, v, self.steps, self.T, residual, t0=self.t0)
        if self.spike_counts is not None:
            count = out.ne(0).sum((0, 1), dtype=torch.float64)
            self.spike_counts[name] = self.spike_counts.get(name, 0) + count
        return out.flatten(0, 1)

    def output(self, target: Any, args: tuple, kwargs: dict) -> Any:
        (y,) = args
        if not isinstance(y, Tensor):
            raise TypeError("a SpikingNetwork must return a single tensor of logits")
        return y


def _device_of(x: Tensor | _Sum) -> torch.device:
    return x[0].device if isinstance(x, _Sum) else x.device


def _float32(x: Tensor | _Sum) -> Tensor | _Sum:
    """A neuron's input current(s) in float32 (autocast leaves conv outputs in half precision)."""
    return _Sum(v.float() for v in x) if isinstance(x, _Sum) else x.float()


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
    engine = _Chunk(gm, steps, T or steps, {} if state is None else state, {}, static_input=True)
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
        encoding: ``"direct"``, ``"poisson"`` or ``"switch"`` (see :func:`encode`).
        max_batch: largest time-folded batch ``steps * images``: images run in groups of
            ``max_batch // min(T, SCAN_BLOCK)``, each for ``T`` steps in chunks of
            ``max_batch // group`` steps, which bounds memory whatever ``T`` is (``None``:
            :func:`auto_max_batch` of ``x``'s device).
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
    max_batch = max_batch or auto_max_batch(x.device)
    group = max(1, max_batch // min(T, SCAN_BLOCK))
    deferred = residual_adds(gm)
    outs = [
        _simulate_group(gm, x[i : i + group], T, every_step, encoding, max_batch, generator,
                        spike_counts, deferred, amp)
        for i in range(0, max(1, x.shape[0]), group)
    ]
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1 if every_step else 0)


def _simulate_group(
    gm: fx.GraphModule,
    x: Tensor,
    T: int,
    every_step: bool,
    encoding: str,
    max_batch: int,
    generator: torch.Generator | None,
    spike_counts: dict[str, Tensor] | None,
    deferred: frozenset[fx.Node],
    amp: str = "off",
) -> Tensor:
    """:func:`simulate` of one group of images, in chunks of time steps that carry the state."""
    chunk = max(1, min(T, max_batch // max(1, x.shape[0])))
    state: dict[str, Tensor] = {}
    static: dict[fx.Node, tuple[Any, bool]] = {}
    total, history = None, []
    for t0 in range(0, T, chunk):
        steps = min(chunk, T - t0)
        inp = encode(x, encoding, t0, steps, T, generator)
        engine = _Chunk(gm, steps, T, state, static, encoding == "direct", spike_counts, deferred,
                        amp != "off", t0)
        with autocast(x.device, amp):
            y = engine.run(inp)
        y = y if amp == "off" else y.float()
        y = y.view(steps, x.shape[0], *y.shape[1:]) if y.shape[0] == steps * x.shape[0] else (
            y.unsqueeze(0).expand(steps, *y.shape)
        )
        # one left-to-right running sum, so chunked and unchunked runs round identically
        cum = y.cumsum(0) if total is None else torch.cat([total[None], y]).cumsum(0)[1:]
        total = cum[-1]
        if every_step:
            history.append(cum / torch.arange(t0 + 1, t0 + steps + 1, device=y.device).view(
                -1, *([1] * (y.dim() - 1))))
    return torch.cat(history) if every_step else total / T


class _AnnView(fx.Interpreter):
    """Runs the spiking graph as the ANN it came from: each neuron acts as its ReLU."""

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        mod = self.submodules[target]
        if isinstance(mod, IFNeuron):
            return mod.relu(args[0])
        return super().call_module(target, args, kwargs)


def run_ann(gm: fx.GraphModule, x: Tensor) -> Tensor:
    """The ANN output of a spiking graph (neurons replaced by their ReLU)."""
    return _AnnView(gm).run(x)


class SpikingNetwork(nn.Module):
    """A converted spiking network: the graph, its default ``T`` and input encoding.

    All state is named tensors: neuron thresholds and initial potentials are buffers of the graph
    (``state_dict()`` keys such as ``layer1.0.relu.threshold``), named after the ANN's activations.
    ``max_batch`` ``None`` follows the input's device (:func:`auto_max_batch`); ``amp`` names the
    autocast dtype of the stateless ops (see :func:`simulate`).
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
        return run_ann(self.graph, x)
