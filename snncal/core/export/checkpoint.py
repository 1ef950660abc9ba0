"""Spiking-network checkpoints: safetensors weights + JSON metadata, written atomically.

An SNN checkpoint named ``PATH`` is two files, like an ANN checkpoint of :mod:`snncal.ann.checkpoint`:

* ``PATH.safetensors``: ``snn.state_dict()`` (folded and calibrated weights, neuron ``threshold``
  and ``v0`` buffers), with the metadata embedded as JSON in the header (key ``"snncal"``);
* ``PATH.json``: the same metadata, pretty-printed.

The metadata holds ``ann`` (the ANN's architecture metadata, as in an ANN checkpoint: ``arch``,
``num_classes``, ``width``, ``model_kwargs``, ``normalize``, ...), ``config`` (the
:class:`~snncal.ConvertConfig`), ``input_shape`` (one example input without the batch dimension)
and ``calibration`` (the :class:`~snncal.core.calibrate.CalibrationReport`). :func:`load_snn` rebuilds
the graph from the model registry and loads the tensors, so no pickled code is involved.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snncal.ann.checkpoint import model_from_meta  # TODO(#16): graph stored as data, no registry
from snncal.core.calibrate import CalibrationReport, LayerReport
from snncal.core.config import ConvertConfig, make_config
from snncal.core.convert import to_spiking
from snncal.core.engine import SpikingNetwork
from snncal.core.files import checkpoint_paths, read_meta, read_tensors, to_plain, write_tensors
from snncal.core.graph import prepare

__all__ = ["FORMAT", "load_snn", "read_snn_meta", "save_snn"]

log = logging.getLogger("snncal")

FORMAT = "snncal-snn/1"
_SYNAPSES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def save_snn(
    path: str | Path,
    snn: SpikingNetwork,
    ann_meta: dict[str, Any],
    config: ConvertConfig,
    input_shape: Sequence[int] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save ``snn`` atomically as ``PATH.safetensors`` + ``PATH.json``; returns the weights path.

    Args:
        path: checkpoint name, with or without a ``.safetensors`` / ``.json`` suffix.
        snn: the converted network.
        ann_meta: metadata of the ANN it came from (``arch`` is required; see :mod:`snncal.ann.checkpoint`).
        config: the conversion configuration that produced ``snn``.
        input_shape: one input without the batch dimension, e.g. ``[3, 32, 32]``; default: the
            ANN meta's ``input_size``.
        extra: more JSON-ready metadata (accuracies, the ANN checkpoint path, ...).
    """
    if "arch" not in ann_meta:
        raise ValueError("ann_meta needs an 'arch' entry (a snncal.ann.models name)")
    shape = input_shape if input_shape is not None else ann_meta.get("input_size")
    if shape is None:
        raise ValueError("give input_shape (or an 'input_size' entry in ann_meta)")
    meta = {
        "format": FORMAT,
        "ann": to_plain(ann_meta),
        "config": config.to_dict(),
        "input_shape": [int(s) for s in shape],
        "T": snn.T,
        "encoding": snn.encoding,
        "calibration": to_plain(snn.calibration) if snn.calibration is not None else None,
        **to_plain(extra or {}),
    }
    return write_tensors(path, snn.state_dict(), meta)


def read_snn_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of an SNN checkpoint (from the safetensors header)."""
    meta = read_meta(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an SNN checkpoint (format {meta.get('format')!r})")
    return meta


def _report(data: dict[str, Any] | None) -> CalibrationReport | None:
    if data is None:
        return None
    layers = [
        LayerReport(**{**d, "weight_loss": tuple(d["weight_loss"]) if d.get("weight_loss") else None})
        for d in data.get("layers", [])
    ]
    return CalibrationReport(**{**data, "steps": tuple(data["steps"]), "layers": layers})


def _match_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Shape ``graph``'s buffers like ``state``: neuron thresholds / potentials and added biases.

    Per-channel thresholds and element-wise initial potentials change a buffer's shape, a
    time-dependent bias sets one that was ``None``; bias correction gives a bias to a conv /
    linear that had none.
    """
    for key, value in state.items():
        owner, _, name = key.rpartition(".")
        try:
            sub = module.get_submodule(owner)
        except AttributeError:
            continue  # reported by load_state_dict
        if name in sub._buffers and getattr(sub._buffers[name], "shape", None) != value.shape:
            setattr(sub, name, torch.empty_like(value))
        elif name == "bias" and isinstance(sub, _SYNAPSES) and sub.bias is None:
            sub.bias = nn.Parameter(torch.empty_like(value))


def load_snn(path: str | Path, device: str | torch.device = "cpu") -> SpikingNetwork:
    """Rebuild the :class:`SpikingNetwork` saved by :func:`save_snn` at ``path``.

    The ANN architecture comes from the registry; its trace is rewritten exactly as at conversion
    time (same ``prepare`` options), neurons get placeholder thresholds, and the saved tensors
    (weights, thresholds, initial potentials) are loaded over them.
    """
    state, meta = read_tensors(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an SNN checkpoint (format {meta.get('format')!r})")
    weights, _ = checkpoint_paths(path)
    cfg = make_config(None, **meta["config"])
    example = torch.zeros(2, *meta["input_shape"])
    gm = prepare(
        model_from_meta(meta["ann"]), example, maxpool_to_avgpool=cfg.maxpool_to_avgpool,
        convert_avgpool=cfg.convert_avgpool,
    )
    placeholders = _placeholder_thresholds(gm)
    graph = to_spiking(gm, cfg, placeholders).graph
    snn = SpikingNetwork(graph, meta.get("T", cfg.T), meta.get("encoding", cfg.encoding), cfg.max_batch)
    _match_state(snn, state)
    missing, unexpected = snn.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not match arch {meta['ann']['arch']!r}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    snn.calibration = _report(meta.get("calibration"))
    log.info("loaded SNN %s (%s, T=%d, %d neurons)", weights, meta["ann"]["arch"], snn.T, len(snn.neurons()))
    return snn.to(device).eval()


def _placeholder_thresholds(gm: nn.Module) -> dict[str, torch.Tensor]:
    """A threshold of 1 for every activation of a prepared graph."""
    from snncal.core.graph import is_activation

    return {n.target: torch.ones(()) for n in gm.graph.nodes if is_activation(gm, n)}
