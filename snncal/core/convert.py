"""ANN -> SNN in staged verbs, as in torch.ao's prepare -> calibrate -> convert.

    prepare(model, example)     the canonical ANN: traced, BN folded, one activation per ReLU call
    to_spiking(ann)             every activation becomes an IF neuron (threshold 1 until set)
    observe(snn, data)          thresholds from the ANN's statistics (the method's ANN-only steps)
    calibrate(snn, data)        the method's steps, layer by layer, in one sweep over the graph
    convert(model, data)        all of it: prepare -> to_spiking -> calibrate

``calibrate`` runs the whole method, threshold rule included, so ``observe`` is needed only for a
network without calibration; its thresholds are the ones ``calibrate`` starts from.

Under ``torch.distributed`` (e.g. launched by ``torchrun``) each rank's ``calib_data`` is its share
of the calibration set: it draws its part of ``num_images`` from it, statistics are reduced over
all ranks, and every rank ends with the same network (docs/distributed.md).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable

import torch
from torch import Tensor, fx, nn
from torch.utils.data import DataLoader, Dataset

from snncal.core import distributed as dist
from snncal.core import graph
from snncal.core.calibrate import STEPS, CalibrationReport, Method, get_method, run_steps
from snncal.core.config import ConvertConfig, make_config
from snncal.core.device import module_device
from snncal.core.engine import SpikingNetwork
from snncal.core.graph import is_activation, set_module
from snncal.core.neuron import IFNeuron
from snncal.core.subsets import random_indices

__all__ = [
    "calibrate",
    "calibration_images",
    "calibration_set",
    "convert",
    "observe",
    "prepare",
    "to_spiking",
]

log = logging.getLogger("snncal")

CalibData = DataLoader | Dataset | Tensor | Iterable


def calibration_images(data: CalibData, num_images: int, seed: int = 0) -> Tensor:
    """Up to ``num_images`` inputs from ``data`` as one float32 tensor (see :func:`calibration_set`)."""
    return calibration_set(data, num_images, seed)[0]


def calibration_set(data: CalibData, num_images: int, seed: int = 0) -> tuple[Tensor, Tensor | None]:
    """Up to ``num_images`` inputs from ``data`` as one float32 tensor, and their labels if
    ``data`` yields ``(x, y)`` (else ``None``).

    A Dataset or a tensor is sampled without replacement with ``seed``; a DataLoader (or any
    iterable of ``x`` or ``(x, y)``) is read in its own order. Non-finite values raise a
    ValueError: one NaN pixel would silently spoil every threshold after it.
    """
    if isinstance(data, Tensor):
        idx = random_indices(len(data), num_images, seed) if len(data) > num_images else None
        items = [(data if idx is None else data[idx], None)]
    elif isinstance(data, Dataset) and hasattr(data, "__len__"):
        items = [_pair(data[i], batched=False) for i in random_indices(len(data), num_images, seed)]
    else:
        items, count = [], 0
        for item in data:
            x, y = _pair(item, batched=True)
            items.append((x[: num_images - count], None if y is None else y[: num_images - count]))
            count += len(items[-1][0])
            if count >= num_images:
                break
    if not items or sum(len(x) for x, _ in items) == 0:
        raise ValueError("calib_data holds no images")
    stack = torch.cat if isinstance(data, Tensor) or not isinstance(data, Dataset) else torch.stack
    images = stack([x for x, _ in items])
    labels = None if any(y is None for _, y in items) else stack([torch.as_tensor(y) for _, y in items])
    bad = ~torch.isfinite(images)
    if bad.any():
        first = int(bad.flatten(1).any(1).nonzero()[0])
        raise ValueError(f"calibration images hold {int(bad.sum())} non-finite values (NaN or Inf), "
                         f"the first in image {first} of those drawn: clean or drop such images")
    return images.float(), labels


def _pair(item: Tensor | tuple | list, batched: bool) -> tuple[Tensor, Tensor | None]:
    """``(x, y)`` of a data item (``y`` is ``None`` when the item is an input alone)."""
    if isinstance(item, (tuple, list)):
        return item[0], (item[1] if len(item) > 1 else None)
    return item, None


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
        set_module(gm, node.target, IFNeuron(th, cfg.reset, ann_max=cap))
    gm.recompile()
    return SpikingNetwork(gm, cfg.T, cfg.encoding, cfg.max_batch, cfg.amp)


def observe(snn: SpikingNetwork, calib_data: CalibData, config: ConvertConfig | None = None,
            **overrides) -> dict[str, Tensor]:
    """Set every neuron's threshold from the ANN's statistics on the calibration images: the
    configured method's steps that need no simulation (its threshold rule). Returns them by name."""
    cfg, method = _configure(config, overrides)
    ann_steps = tuple(s for s in method.steps if not STEPS[s].spikes)
    images = _share(calib_data, cfg, module_device(snn))
    run_steps(snn, images, cfg, Method(method.name, ann_steps))
    return {name: n.threshold.clone() for name, n in snn.neurons().items()}


def calibrate(
    snn: SpikingNetwork,
    calib_data: CalibData,
    config: ConvertConfig | None = None,
    *,
    train_data: Dataset | DataLoader | None = None,
    progress: bool = False,
    **overrides,
) -> CalibrationReport:
    """Calibrate ``snn`` in place with the configured method: its steps on every layer, in one
    sweep, each layer from the already calibrated spike trains of the layers before it; then its
    network steps (``hybrid`` trains on ``train_data``, see :func:`convert`)."""
    cfg, method = _configure(config, overrides)
    images = _share(calib_data, cfg, module_device(snn))
    snn.calibration = run_steps(snn, images, cfg, method, progress, train_data)
    return snn.calibration


def convert(
    model: nn.Module,
    calib_data: CalibData,
    config: ConvertConfig | None = None,
    *,
    train_data: Dataset | DataLoader | None = None,
    progress: bool = False,
    **overrides,
) -> SpikingNetwork:
    """Convert a trained ANN into a calibrated spiking network.

    Args:
        model: a trained PyTorch classifier with ReLU-family activations (traceable by torch.fx).
        calib_data: unlabeled calibration inputs: a DataLoader of ``x`` or ``(x, y)``, a Dataset,
            or a tensor of inputs; under ``torch.distributed``, this rank's share of them.
        config: a :class:`ConvertConfig`; keyword ``overrides`` (``T=32``, ``threshold="mmse"``,
            ``method="light"``, ...) replace its fields.
        train_data: the labelled training set (a Dataset or DataLoader of ``(x, y)``) of methods
            that train the converted network (``hybrid``), apart from the calibration images;
            under ``torch.distributed``, this rank's share of it. Other methods ignore it.
        progress: show a progress bar over the layers being calibrated.

    Returns:
        The :class:`SpikingNetwork`, on the device of ``model``'s parameters.
    """
    cfg, method = _configure(config, overrides)
    images = _share(calib_data, cfg, module_device(model))
    ann = prepare(model, images[: cfg.batch_size], cfg)
    snn = to_spiking(ann, cfg)
    log.info("converted %s: %d IF neurons", type(model).__name__, len(snn.neurons()))
    snn.calibration = run_steps(snn, images, cfg, method, progress, train_data)
    return snn


def _share(data: CalibData, cfg: ConvertConfig, device: torch.device) -> Tensor:
    """This process's calibration images on ``device``: up to ``cfg.num_images``, or
    under ``torch.distributed`` this rank's part of them, drawn from its own ``data``."""
    if cfg.num_images < dist.world_size():  # the same answer on every rank: none waits alone
        raise ValueError(f"num_images={cfg.num_images} leaves no calibration image to some of the "
                         f"{dist.world_size()} processes: use at least one per process")
    # seed + rank: ranks that were all given the whole set draw different images from it
    images, _ = calibration_set(data, dist.share(cfg.num_images), cfg.seed + dist.rank())
    return images.to(device)


def _configure(config: ConvertConfig | None, overrides: dict) -> tuple[ConvertConfig, Method]:
    """The configuration with ``overrides`` and the settings its method fixes, and the method."""
    cfg = make_config(config, **overrides)
    method = get_method(cfg.method)
    return method.configure(cfg), method
