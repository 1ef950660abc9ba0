"""ANN -> SNN in staged verbs, as in torch.ao's prepare -> calibrate -> convert.

    prepare(model, example)     the canonical ANN: traced, BN folded, one activation per ReLU call
    to_spiking(ann)             every activation becomes an IF neuron (threshold 1 until set)
    observe(snn, data)          thresholds from the ANN's statistics (the method's ANN-only steps)
    calibrate(snn, data)        the method's steps, layer by layer, in one sweep over the graph
    convert(model, data)        all of it: prepare -> to_spiking -> calibrate

``calibrate`` runs the whole method, threshold rule included, so ``observe`` is needed only for a
network without calibration; its thresholds are the ones ``calibrate`` starts from.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable

import torch
from torch import Tensor, fx, nn
from torch.utils.data import DataLoader, Dataset

from snncal.core import graph
from snncal.core.calibrate import STEPS, CalibrationReport, Method, get_method, run_steps
from snncal.core.config import ConvertConfig, make_config
from snncal.core.engine import SpikingNetwork
from snncal.core.graph import is_activation
from snncal.core.neuron import IFNeuron

__all__ = ["calibrate", "calibration_images", "convert", "observe", "prepare", "to_spiking"]

log = logging.getLogger("snncal")

CalibData = DataLoader | Dataset | Tensor | Iterable


def calibration_images(data: CalibData, num_images: int, seed: int = 0) -> Tensor:
    """Up to ``num_images`` unlabeled inputs from ``data``, as one float32 tensor.

    A Dataset or a tensor is sampled without replacement with ``seed``; a DataLoader (or any
    iterable of ``x`` or ``(x, y)``) is read in its own order. Labels are ignored. Non-finite
    values raise a ValueError: one NaN pixel would silently spoil every threshold after it.
    """
    gen = torch.Generator().manual_seed(seed)
    if isinstance(data, Tensor):
        idx = torch.randperm(len(data), generator=gen)[:num_images] if len(data) > num_images else None
        images = data if idx is None else data[idx]
    elif isinstance(data, Dataset) and hasattr(data, "__len__"):
        idx = torch.randperm(len(data), generator=gen)[:num_images].tolist()
        images = torch.stack([_inputs(data[i]) for i in idx])
    else:
        taken, count = [], 0
        for item in data:
            x = _inputs(item)
            taken.append(x[: num_images - count])
            count += len(taken[-1])
            if count >= num_images:
                break
        images = torch.cat(taken) if taken else torch.empty(0)
    if len(images) == 0:
        raise ValueError("calib_data holds no images")
    bad = ~torch.isfinite(images)
    if bad.any():
        first = int(bad.flatten(1).any(1).nonzero()[0])
        raise ValueError(f"calibration images hold {int(bad.sum())} non-finite values (NaN or Inf), "
                         f"the first in image {first} of those drawn: clean or drop such images")
    return images.float()


def _inputs(item: Tensor | tuple | list) -> Tensor:
    return item[0] if isinstance(item, (tuple, list)) else item


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), next(iter(model.buffers()), torch.zeros(()))).device


def prepare(
    model: nn.Module, example: Tensor, config: ConvertConfig | None = None, **overrides
) -> fx.GraphModule:
    """The canonical ANN of ``model`` (see :func:`snncal.core.graph.prepare`): the same function,
    traced, BN folded, Dropout gone, one activation module per ReLU call; pools converted to
    depthwise conv + activation when ``config.convert_avgpool``."""
    cfg = make_config(config, **overrides)
    return graph.prepare(model, example, maxpool_to_avgpool=cfg.maxpool_to_avgpool,
                         convert_avgpool=cfg.convert_avgpool)


def to_spiking(
    ann: fx.GraphModule,
    config: ConvertConfig | None = None,
    thresholds: dict[str, Tensor] | None = None,
    **overrides,
) -> SpikingNetwork:
    """Replace each activation of the canonical ANN by an :class:`IFNeuron` of the same name.

    Before: ``conv -> ReLU``.  After: ``conv -> IFNeuron`` (threshold from ``thresholds`` by
    activation name, else 1 until :func:`observe` or :func:`calibrate` sets it; reset as the
    configured method needs).
    """
    cfg = _configure(config, overrides)[0]
    gm = copy.deepcopy(ann)
    for node in [n for n in gm.graph.nodes if is_activation(gm, n)]:
        act = gm.get_submodule(node.target)
        cap = act.max_val if isinstance(act, nn.Hardtanh) else None
        th = (thresholds or {}).get(node.target, 1.0)
        parent, _, name = node.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, name, IFNeuron(th, cfg.reset, ann_max=cap))
    gm.recompile()
    return SpikingNetwork(gm, cfg.T, cfg.encoding, cfg.max_batch)


def observe(snn: SpikingNetwork, calib_data: CalibData, config: ConvertConfig | None = None,
            **overrides) -> dict[str, Tensor]:
    """Set every neuron's threshold from the ANN's statistics on the calibration images: the
    configured method's steps that need no simulation (its threshold rule). Returns them by name."""
    cfg, method = _configure(config, overrides)
    ann_steps = tuple(s for s in method.steps if not STEPS[s].spikes)
    images = calibration_images(calib_data, cfg.num_images, cfg.seed).to(_device(snn))
    run_steps(snn, images, cfg, Method(method.name, ann_steps))
    return {name: n.threshold.clone() for name, n in snn.neurons().items()}


def calibrate(
    snn: SpikingNetwork,
    calib_data: CalibData,
    config: ConvertConfig | None = None,
    *,
    progress: bool = False,
    **overrides,
) -> CalibrationReport:
    """Calibrate ``snn`` in place with the configured method: its steps on every layer, in one
    sweep, each layer from the already calibrated spike trains of the layers before it."""
    cfg, method = _configure(config, overrides)
    images = calibration_images(calib_data, cfg.num_images, cfg.seed).to(_device(snn))
    snn.calibration = run_steps(snn, images, cfg, method, progress)
    return snn.calibration


def convert(
    model: nn.Module,
    calib_data: CalibData,
    config: ConvertConfig | None = None,
    *,
    progress: bool = False,
    **overrides,
) -> SpikingNetwork:
    """Convert a trained ANN into a calibrated spiking network.

    Args:
        model: a trained PyTorch classifier with ReLU-family activations (traceable by torch.fx).
        calib_data: unlabeled calibration inputs: a DataLoader of ``x`` or ``(x, y)``, a Dataset,
            or a tensor of inputs.
        config: a :class:`ConvertConfig`; keyword ``overrides`` (``T=32``, ``threshold="mmse"``,
            ``method="light"``, ...) replace its fields.
        progress: show a progress bar over the layers being calibrated.

    Returns:
        The :class:`SpikingNetwork`, on the device of ``model``'s parameters.
    """
    cfg, method = _configure(config, overrides)
    images = calibration_images(calib_data, cfg.num_images, cfg.seed).to(_device(model))
    ann = prepare(model, images[: cfg.batch_size], cfg)
    snn = to_spiking(ann, cfg)
    log.info("converted %s: %d IF neurons", type(model).__name__, len(snn.neurons()))
    snn.calibration = run_steps(snn, images, cfg, method, progress)
    return snn


def _configure(config: ConvertConfig | None, overrides: dict) -> tuple[ConvertConfig, Method]:
    """The configuration with ``overrides`` and the settings its method fixes, and the method."""
    cfg = make_config(config, **overrides)
    method = get_method(cfg.method)
    return method.configure(cfg), method
