"""Spiking-network files: any converted SNN, saved as tensors + a self-describing JSON graph.

An SNN file named ``PATH`` is the safetensors + JSON pair of :mod:`snncal.core.files`:

* ``PATH.safetensors``: every tensor the graph reads (folded and calibrated weights, neuron
  ``threshold`` and ``v0``, buffers such as an input normalisation), under the names of
  ``snn.state_dict()``, with the metadata embedded in the header;
* ``PATH.json``: the same metadata, for people.

The metadata is plain data (format ``snncal-snn/2``)::

    {"format": "snncal-snn/2",
     "snn": {"T": 32, "encoding": "direct", "max_batch": 64},
     "graph": {"nodes": [...], "modules": {...}, "attributes": {...}},   # see graph_data
     "calibration": {...} or null,                                       # the CalibrationReport
     "meta": {...}}                                                      # the caller's own data

:func:`load` rebuilds the network from that data alone: no pickled code, no model class, no
registry, so a network converted from a user's own model loads in any process, and gives
bit-identical outputs. Every problem with a file raises one
:class:`~snncal.core.files.FileFormatError` that names the file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from snncal.core.calibrate import CalibrationReport, LayerReport
from snncal.core.device import AMP
from snncal.core.encoding import ENCODINGS
from snncal.core.engine import SpikingNetwork
from snncal.core.export.graph_data import build_graph, graph_data
from snncal.core.files import FileFormatError, checkpoint_paths, read_tensors, to_plain, write_tensors
from snncal.core.files import read_meta as read_file_meta

__all__ = [
    "FORMAT",
    "load",
    "read_meta",
    "save",
]

log = logging.getLogger("snncal")

_KIND, _VERSION = "snncal-snn", 2
FORMAT = f"{_KIND}/{_VERSION}"
_PREFIX = "graph."  # tensors are named as in SpikingNetwork.state_dict()


def save(snn: SpikingNetwork, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Save ``snn`` atomically as ``PATH.safetensors`` + ``PATH.json``; returns the weights path.

    Args:
        snn: a network from :func:`snncal.convert` (any model it accepts).
        path: file name, with or without a ``.safetensors`` / ``.json`` suffix.
        meta: the caller's JSON-ready data (configuration, data set, input shape, ...), stored
            under ``"meta"``.

    Raises:
        ValueError: ``meta`` is not JSON-ready, or the graph holds something a file cannot.
    """
    data, tensors = graph_data(snn.graph)
    header = {
        "format": FORMAT,
        "snn": {"T": snn.T, "encoding": snn.encoding, "max_batch": snn.max_batch, "amp": snn.amp},
        "graph": data,
        "calibration": _report_data(snn.calibration),
        "meta": _json_ready(meta or {}),
    }
    return write_tensors(path, {_PREFIX + k: v for k, v in tensors.items()}, header)


def _json_ready(meta: dict[str, Any]) -> dict[str, Any]:
    plain = to_plain(meta)
    try:
        json.dumps(plain)
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta must be JSON-ready: {err}") from None
    return plain


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of the SNN file at ``path`` (format, settings, graph, calibration, ``meta``)."""
    meta = read_file_meta(path)
    _check_format(checkpoint_paths(path)[0], meta)
    return meta


def load(path: str | Path, device: str | torch.device = "cpu") -> SpikingNetwork:
    """The :class:`SpikingNetwork` saved at ``path``, in eval mode on ``device``.

    Raises:
        FileNotFoundError: no file at ``path``.
        FileFormatError: the file is damaged, of another kind or a newer format, or describes
            something this version cannot build (an unknown op or module type, a tensor of the
            wrong shape, a node that refers to a missing one, bad settings).
    """
    tensors, meta = read_tensors(path)
    weights = checkpoint_paths(path)[0]
    _check_format(weights, meta)
    try:
        T, encoding, max_batch, amp = _settings(meta.get("snn"))
        graph = build_graph(meta.get("graph"), _graph_tensors(tensors))
        report = _report(meta.get("calibration"))
    except FileFormatError as err:
        raise FileFormatError(f"{weights}: {err}") from None
    except RecursionError:
        raise FileFormatError(f"{weights}: metadata nested too deeply") from None
    snn = SpikingNetwork(graph, T, encoding, max_batch, amp)
    snn.calibration = report
    log.info("loaded SNN %s (T=%d, %d neurons)", weights, T, len(snn.neurons()))
    return snn.to(device).eval()


def _check_format(weights: Path, meta: dict[str, Any]) -> None:
    """Accept this format; name what a file of another kind or version is."""
    fmt = meta.get("format")
    kind, _, version = fmt.partition("/") if isinstance(fmt, str) else ("", "", "")
    if kind != _KIND or not version.isdigit():
        raise FileFormatError(f"{weights} is not an SNN checkpoint (format {fmt!r})")
    if int(version) > _VERSION:
        raise FileFormatError(f"{weights} has format {fmt}, newer than this snncal reads ({FORMAT}): "
                              "upgrade snncal")
    if int(version) < _VERSION:
        raise FileFormatError(f"{weights} has the old format {fmt}, which rebuilt the graph from the "
                              f"model zoo; this snncal reads {FORMAT}: convert the model again")


def _settings(data: Any) -> tuple[int, str, int | None, str]:
    """``(T, encoding, max_batch, amp)``, checked (``max_batch`` ``None``: chosen by the device)."""
    if not isinstance(data, dict):
        raise FileFormatError(f"the SNN settings are {data!r}, not an object")
    T, encoding, max_batch = data.get("T"), data.get("encoding"), data.get("max_batch")
    amp = data.get("amp", "off")
    for name, value in (("T", T), ("max_batch", 1 if max_batch is None else max_batch)):
        if not _is_int(value) or value < 1:
            raise FileFormatError(f"{name} = {value!r}, not a positive integer")
    if encoding not in ENCODINGS:
        raise FileFormatError(f"encoding {encoding!r} is not one of {ENCODINGS}")
    if amp not in AMP:
        raise FileFormatError(f"amp {amp!r} is not one of {tuple(AMP)}")
    return T, encoding, max_batch, amp


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _graph_tensors(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    foreign = [k for k in tensors if not k.startswith(_PREFIX)]
    if foreign:
        raise FileFormatError(f"tensors {sorted(foreign)[:5]} are not part of the graph")
    return {k[len(_PREFIX) :]: v for k, v in tensors.items()}


# ----------------------------------------------------------------------------- calibration report
def _report_data(report: CalibrationReport | None) -> dict[str, Any] | None:
    """The report as JSON data; non-finite floats as ``"inf"`` / ``"-inf"`` / ``"nan"``."""
    return None if report is None else _finite(dataclasses.asdict(report))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _report(data: Any) -> CalibrationReport | None:
    """The :class:`CalibrationReport` of :func:`_report_data`, checked field by field."""
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("layers", []), list):
        raise FileFormatError(f"the calibration report is malformed: {str(data)[:80]}")
    return CalibrationReport(
        method=_typed(data.get("method"), str, "method"),
        steps=tuple(_typed(s, str, "steps") for s in _typed(data.get("steps"), list, "steps")),
        T=_typed(data.get("T"), int, "T"),
        num_images=_typed(data.get("num_images"), int, "num_images"),
        layers=[_layer(d) for d in data.get("layers", [])],
        seconds=_number(data.get("seconds", 0.0), "seconds"),
        node_runs=_typed(data.get("node_runs", 0), int, "node_runs"),
        step_seconds={_typed(k, str, "step_seconds"): _number(v, "step_seconds")
                      for k, v in _typed(data.get("step_seconds", {}), dict, "step_seconds").items()},
    )


def _layer(data: Any) -> LayerReport:
    if not isinstance(data, dict):
        raise FileFormatError(f"a layer of the calibration report is {str(data)[:80]}")
    loss = data.get("weight_loss")
    if loss is not None and not (isinstance(loss, list) and len(loss) == 2):
        raise FileFormatError(f"weight_loss = {loss!r}, not a pair")
    return LayerReport(
        name=_typed(data.get("name"), str, "name"),
        **{k: _number(data.get(k), k) for k in ("mse_before", "mse_after", "mean_error_before",
                                                "mean_error_after")},
        weight_loss=None if loss is None else tuple(_number(v, "weight_loss") for v in loss),
        seconds=_number(data.get("seconds", 0.0), "seconds"),
    )


def _typed(value: Any, kind: type, key: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FileFormatError(f"calibration report: {key} = {str(value)[:40]}, not a {kind.__name__}")
    return value


def _number(value: Any, key: str) -> float:
    if value in ("inf", "-inf", "nan"):
        return float(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise FileFormatError(f"calibration report: {key} = {str(value)[:40]}, not a number")
    return float(value)
