"""ANN -> SNN: prepare the graph, observe thresholds, swap activations for IF neurons, calibrate."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable

import torch
from torch import Tensor, fx, nn
from torch.utils.data import DataLoader, Dataset

from snncal.core import observers as obs
from snncal.core.calibrate import calibrate, method_steps
from snncal.core.config import ConvertConfig, make_config
from snncal.core.engine import SpikingNetwork
from snncal.core.graph import is_activation, prepare
from snncal.core.neuron import IFNeuron

log = logging.getLogger("snncal")


def calibration_batches(
    data: DataLoader | Dataset | Tensor | Iterable, num_images: int, batch_size: int, seed: int
) -> list[Tensor]:
    """Up to ``num_images`` unlabeled inputs from ``data``, as batches of ``batch_size``.

    A Dataset or a tensor is sampled without replacement with ``seed``; a DataLoader (or any
    iterable of ``x`` or ``(x, y)``) is read in its own order. Labels are ignored.
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
        if not taken:
            raise ValueError("calib_data yielded no inputs")
        images = torch.cat(taken)
    return list(images.split(batch_size))


def _inputs(item) -> Tensor:
    return item[0] if isinstance(item, (tuple, list)) else item


def _activations(gm: fx.GraphModule) -> list[fx.Node]:
    return [n for n in gm.graph.nodes if is_activation(gm, n)]


def _cap(module: nn.Module) -> float | None:
    return module.max_val if isinstance(module, nn.Hardtanh) else None


def _observe(gm: fx.GraphModule, batches: list[Tensor], make) -> dict[str, nn.Module]:
    """Run ``batches`` through a copy of ``gm`` with an observer before each activation."""
    gm = copy.deepcopy(gm)
    observers = {}
    for node in _activations(gm):
        observer = make(node.target, _cap(gm.get_submodule(node.target)))
        name = f"{node.target.replace('.', '_')}_observer"
        gm.add_submodule(name, observer)
        with gm.graph.inserting_before(node):
            node.args = (gm.graph.call_module(name, node.args),)
        observers[node.target] = observer
    gm.recompile()
    with torch.no_grad():
        for x in batches:
            gm(x)
    return observers


def observe_thresholds(
    gm: fx.GraphModule, batches: list[Tensor], cfg: ConvertConfig
) -> dict[str, Tensor]:
    """Threshold of every activation of the canonical ANN ``gm``, from its inputs on ``batches``."""
    maxes = _observe(gm, batches, lambda _, cap: obs.MaxObserver(cfg.per_channel, cap))
    if cfg.threshold == "max":
        return {name: o.max_val for name, o in maxes.items()}
    hists = _observe(
        gm, batches, lambda name, cap: obs.HistogramObserver(maxes[name].max_val, cap=cap)
    )
    return {
        name: obs.finalize(
            h.mmse(cfg.T) if cfg.threshold == "mmse" else h.percentile(cfg.percentile), h.max_val
        )
        for name, h in hists.items()
    }


def to_spiking(
    gm: fx.GraphModule, thresholds: dict[str, Tensor], cfg: ConvertConfig
) -> fx.GraphModule:
    """Replace each canonical activation by an :class:`IFNeuron` of the given threshold.

    Before: ``conv -> ReLU``.  After: ``conv -> IFNeuron`` under the same module name.
    """
    gm = copy.deepcopy(gm)
    for node in _activations(gm):
        th = obs.finalize(thresholds[node.target], thresholds[node.target])
        shape = node.meta["tensor_meta"].shape
        if th.dim() == 1:  # per channel: broadcast over [N, C, ...]
            th = th.view(-1, *([1] * (len(shape) - 2)))
        neuron = IFNeuron(th, cfg.reset, cfg.shift, _cap(gm.get_submodule(node.target)))
        parent, _, name = node.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, name, neuron)
    gm.recompile()
    return gm


def convert(
    model: nn.Module,
    calib_data: DataLoader | Dataset | Tensor,
    config: ConvertConfig | None = None,
    **overrides,
) -> SpikingNetwork:
    """Convert a trained ANN into a calibrated spiking network.

    Args:
        model: a trained PyTorch classifier with ReLU-family activations (traceable by torch.fx).
        calib_data: unlabeled calibration inputs: a DataLoader of ``x`` or ``(x, y)``, a Dataset,
            or a tensor of inputs.
        config: a :class:`ConvertConfig`; keyword ``overrides`` (``T=32``, ``threshold="mmse"``,
            ``method="light"``, ...) replace its fields.

    Returns:
        The :class:`SpikingNetwork`, on the device of ``model``'s parameters.
    """
    cfg = make_config(config, **overrides)
    method_steps(cfg.method)  # an unknown method fails before any work
    device = next(iter(model.parameters()), torch.zeros(())).device
    batches = [
        x.to(device)
        for x in calibration_batches(calib_data, cfg.num_images, cfg.batch_size, cfg.seed)
    ]
    ann = prepare(
        model, batches[0], maxpool_to_avgpool=cfg.maxpool_to_avgpool,
        convert_avgpool=cfg.convert_avgpool,
    )
    thresholds = observe_thresholds(ann, batches, cfg)
    snn = SpikingNetwork(to_spiking(ann, thresholds, cfg), cfg.T, cfg.encoding, cfg.max_batch)
    log.info("converted %s: %d IF neurons", type(model).__name__, len(snn.neurons()))
    snn.calibration = calibrate(snn, batches, cfg)
    return snn
