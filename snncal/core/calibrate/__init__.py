"""Post-training calibration of a converted SNN (Li et al., ICML 2021), as named methods.

A method is a sequence of steps run on every layer during one sweep: ``weight`` (weight
calibration), ``bias`` (bias correction), ``potential`` (potential correction). ``light`` is MMSE
thresholds + bias correction; ``advanced`` adds potential correction and weight calibration.
Any ``+``-joined list of steps (e.g. ``"bias+potential"``) is accepted for ablations.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm.auto import tqdm

from snncal.core.calibrate.bias import bias_correction
from snncal.core.calibrate.potential import potential_correction
from snncal.core.calibrate.sweep import CalibrationReport, LayerReport, Sweep, bias_synapse, synapses
from snncal.core.calibrate.weight import clip_floor_ste, weight_calibration

if TYPE_CHECKING:
    from snncal.core.config import ConvertConfig
    from snncal.core.engine import SpikingNetwork

__all__ = [
    "METHODS",
    "STEPS",
    "CalibrationReport",
    "LayerReport",
    "calibrate",
    "method_steps",
    "register_method",
]
log = logging.getLogger("snncal")

STEPS = ("weight", "bias", "potential")  # the order they run in on each layer
CORRECTIONS = {"bias": bias_correction, "potential": potential_correction}
METHODS: dict[str, tuple[str, ...]] = {
    "none": (),
    "light": ("bias",),
    "advanced": ("weight", "bias", "potential"),
}


def register_method(name: str, steps: tuple[str, ...]) -> None:
    """Make ``name`` a method of ``snncal.convert(method=name)``."""
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown calibration steps {sorted(unknown)}; known: {STEPS}")
    METHODS[name] = tuple(s for s in STEPS if s in steps)


def method_steps(method: str) -> tuple[str, ...]:
    """The steps of a registered method, or of a ``+``-joined list of steps."""
    if method in METHODS:
        return METHODS[method]
    parts = set(method.split("+"))
    if not parts <= set(STEPS):
        raise ValueError(
            f"unknown method {method!r}: use one of {sorted(METHODS)} or '+'-joined steps of {STEPS}"
        )
    return tuple(s for s in STEPS if s in parts)


def _weight_step(sweep: Sweep, seg, neuron, target: Tensor, cfg: ConvertConfig) -> tuple | None:
    params = [p for m in synapses(sweep.gm, seg) for p in m.parameters()]
    rates = sweep.rates(seg)

    def loss(idx: Tensor) -> Tensor:
        current, _ = sweep.run_segment(seg, {n: v[idx] for n, v in rates.items()}, set())
        out = clip_floor_ste(current, neuron.threshold, cfg.T, neuron.v0)
        return ((out - target[idx]) ** 2).flatten(1).sum(1).mean()

    with torch.enable_grad():
        return weight_calibration(
            loss, params, len(target), iters=cfg.weight_iters, lr=cfg.weight_lr,
            batch=cfg.weight_batch, generator=sweep.generator,
        )


def calibrate(snn: SpikingNetwork, batches: list[Tensor], cfg: ConvertConfig) -> CalibrationReport:
    """Calibrate ``snn`` in place on the calibration ``batches``, one layer at a time, in one sweep."""
    steps = method_steps(cfg.method)
    images = torch.cat(batches)
    report = CalibrationReport(cfg.method, steps, cfg.T, len(images))
    if not steps:
        return report
    start = time.perf_counter()
    sweep = Sweep(
        snn.graph, images, cfg.T, max_batch=cfg.max_batch, encoding=cfg.encoding,
        cache_bytes=int(cfg.cache_gb * 2**30), seed=cfg.seed,
    )
    pending = [s for s in steps if s in CORRECTIONS]
    try:
        for seg in tqdm(sweep.segments, desc=f"calibrate ({cfg.method})", leave=False):
            t0 = time.perf_counter()
            neuron = snn.graph.get_submodule(seg.neuron.target)
            target = neuron.relu(sweep.ann_input(seg))
            sweep.ann[seg.neuron] = target
            wloss = _weight_step(sweep, seg, neuron, target, cfg) if "weight" in steps else None
            stats = before = sweep.simulate_layer(seg, target, store=not pending)
            for step in pending:
                CORRECTIONS[step](bias_synapse(sweep.gm, seg), neuron, stats, cfg.T)
                stats = sweep.simulate_layer(seg, target, store=step == pending[-1])
            layer = LayerReport(
                seg.neuron.target, before.mse, stats.mse,
                float(before.channel_error.abs().mean()), float(stats.channel_error.abs().mean()),
                wloss, time.perf_counter() - t0,
            )
            report.layers.append(layer)
            log.info("calibrated %s: mse %.3g -> %.3g", layer.name, layer.mse_before, layer.mse_after)
            sweep.done_with(seg)
    finally:
        sweep.close()
    report.seconds = time.perf_counter() - start
    report.node_runs = sweep.node_runs
    return report
