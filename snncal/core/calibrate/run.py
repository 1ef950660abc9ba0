"""Run a method on a network: its steps on every layer in one sweep, then its network steps."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm.auto import tqdm

from snncal.core import distributed as dist
from snncal.core.calibrate.methods import NETWORK_STEPS, STEPS, Method
from snncal.core.calibrate.reports import CalibrationReport, LayerReport, LayerStats
from snncal.core.calibrate.sweep import Sweep

if TYPE_CHECKING:
    from torch.utils.data import DataLoader, Dataset

    from snncal.core.calibrate.layer import Layer
    from snncal.core.config import ConvertConfig
    from snncal.core.engine import SpikingNetwork

__all__ = ["run_steps"]

log = logging.getLogger("snncal")


def run_steps(
    snn: SpikingNetwork,
    images: Tensor,
    cfg: ConvertConfig,
    method: Method,
    progress: bool = False,
    train_data: Dataset | DataLoader | None = None,
) -> CalibrationReport:
    """Run ``method``'s steps on every layer of ``snn`` in one sweep over the calibration
    ``images``, then its network steps (hybrid fine-tuning trains on ``train_data``, a labelled
    training set); ``cfg`` is already configured for the method. Changes ``snn`` in place.

    Under ``torch.distributed`` ``images`` are this rank's share: every statistic
    is reduced over all shares, and every rank ends with rank 0's network (docs/distributed.md).
    """
    (num_images,) = dist.sum_scalars(len(images))
    report = CalibrationReport(method.name, method.steps, cfg.T, int(num_images))
    start = time.perf_counter()
    with Sweep(
        snn.graph, images, cfg.T, spiking=method.reads_spikes, max_batch=cfg.max_batch,
        ann_batch=cfg.batch_size, encoding=cfg.encoding, cache_bytes=int(cfg.cache_gb * 2**30),
        seed=cfg.seed,
    ) as sweep:
        bar = tqdm(sweep.layers(), total=len(sweep.segments), desc=f"calibrate ({method.name})",
                   leave=False, disable=not progress)
        clock = _Clock(report.step_seconds)
        for layer in bar:  # the sweep computes the layer's ANN input as it reaches it
            t0 = clock.lap("ann")
            for name in method.steps:
                STEPS[name].run(layer, cfg)
                clock.lap(name)
            _check_finite(layer, method)
            final = sweep.finish(layer)
            if final is not None:
                report.layers.append(_layer_report(layer, final, time.perf_counter() - t0))
            clock.lap("finish")
        report.node_runs = sweep.node_runs
    for name in method.after:
        report.extra.update(NETWORK_STEPS[name](snn, train_data, cfg))
        clock.lap(name)
    dist.broadcast_module(snn)  # the same network on every rank, whatever rounding did
    report.seconds = time.perf_counter() - start
    return report


class _Clock:
    """Adds the seconds since its last lap to ``seconds[name]``: where a calibration's time goes."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds, self.last = seconds, time.perf_counter()

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.last = now
        return now


def _check_finite(layer: Layer, method: Method) -> None:
    """Refuse non-finite or non-positive thresholds, and non-finite potentials or weights: they
    would make a silently broken network."""
    neuron = layer.neuron
    bad = [name for name, t in (("threshold", neuron.threshold), ("initial potential", neuron.v0))
           if not torch.isfinite(t).all()]
    bad += [f"{type(m).__name__} {name}" for m in layer.synapses for name, p in m.named_parameters()
            if not torch.isfinite(p).all()]
    if layer.pending_bias is not None and not torch.isfinite(layer.pending_bias).all():
        bad.append("bias correction")
    if not bad and not (neuron.threshold > 0).all():
        bad = ["threshold (not positive)"]
    if bad:
        raise ValueError(f"calibration ({method.name}) of layer {layer.name} gave non-finite "
                         f"{', '.join(bad)}: check the model's weights and the calibration images")


def _layer_report(layer: Layer, final: LayerStats, seconds: float) -> LayerReport:
    first = layer.first_stats or final
    loss = layer.info.get("weight_loss")
    entry = LayerReport(
        layer.name, first.mse, final.mse, float(first.channel_error.abs().mean()),
        float(final.channel_error.abs().mean()), loss, seconds,  # type: ignore[arg-type]
    )
    log.info("calibrated %s: mse %.3g -> %.3g", entry.name, entry.mse_before, entry.mse_after)
    return entry
