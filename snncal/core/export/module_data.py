"""The modules of a converted graph as JSON data: a table from module type to an exporter /
builder pair (:data:`MODULES`), and the checked building of a module from its data and the file's
tensors. Modules are built on the ``meta`` device, so a damaged size never allocates memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from snncal.core.export.values import short_repr, value_from_json, value_to_json
from snncal.core.files import FileFormatError
from snncal.core.graph import ops
from snncal.core.neuron import IFNeuron

__all__ = [
    "BUILD_ERRORS",
    "MODULES",
    "ModuleSpec",
    "build_module",
    "module_data",
]

BUILD_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError, OverflowError)
"""What a constructor may raise on a damaged file's arguments (reported as a FileFormatError)."""


@dataclass(frozen=True)
class ModuleSpec:
    """How one module type travels: ``export(module)`` gives its constructor arguments as plain
    values, ``build(config)`` makes an equal module (on the ``meta`` device when loading; the
    file's tensors are assigned afterwards)."""

    cls: type[nn.Module]
    export: Callable[[nn.Module], dict[str, Any]]
    build: Callable[[dict[str, Any]], nn.Module]


def _fields(cls: type[nn.Module], *names: str) -> ModuleSpec:
    """A spec whose constructor arguments are attributes of the same names (``bias``: whether
    the module has one)."""

    def export(module: nn.Module) -> dict[str, Any]:
        return {n: (module.bias is not None) if n == "bias" else getattr(module, n) for n in names}

    return ModuleSpec(cls, export, lambda config: cls(**config))


def _export_neuron(neuron: IFNeuron) -> dict[str, Any]:
    config = {
        "reset": neuron.reset, "shift": neuron.shift, "ann_max": neuron.ann_max,
        "threshold_shape": list(neuron.threshold.shape), "v0_shape": list(neuron.v0.shape),
    }
    if neuron.step_bias is not None:  # a time-dependent bias (step tbias)
        config["step_bias_shape"] = list(neuron.step_bias.shape)
    return config


def _build_neuron(config: dict[str, Any]) -> IFNeuron:
    config = dict(config)
    cap = config.get("ann_max")
    if not isinstance(config.get("shift"), bool) or not (cap is None or isinstance(cap, (int, float))):
        raise ValueError("shift must be a bool and ann_max a number or null")
    threshold, v0 = torch.empty(config.pop("threshold_shape")), torch.empty(config.pop("v0_shape"))
    step_bias = config.pop("step_bias_shape", None)  # absent in files without a time-dependent bias
    neuron = IFNeuron(threshold, **config)
    neuron.v0 = v0
    if step_bias is not None:
        neuron.step_bias = torch.empty(step_bias)
    return neuron


MODULES: dict[str, ModuleSpec] = {
    "IFNeuron": ModuleSpec(IFNeuron, _export_neuron, _build_neuron),
    **{op.name: _fields(op.target, *op.fields) for op in ops.MODULES.values()},
}
"""Every module type a converted graph may call, by class name: the IF neuron and the op table's."""

_TYPE_NAMES = {spec.cls: name for name, spec in MODULES.items()}


def module_data(module: nn.Module, path: str) -> dict[str, Any]:
    name = _TYPE_NAMES.get(type(module))
    if name is None:
        raise ValueError(f"module '{path}' is a {type(module).__name__}, which an SNN file cannot hold "
                         f"(known types: {', '.join(MODULES)})")
    config = MODULES[name].export(module)
    return {"type": name, "config": {k: value_to_json(v, f"module '{path}'") for k, v in config.items()}}


def build_module(data: Any, path: str, tensors: dict[str, Tensor]) -> nn.Module:
    """The module ``data`` describes, holding ``tensors`` (its ``state_dict``) from the file."""
    where = f"module '{path}'"
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise FileFormatError(f"{where}: malformed entry {short_repr(data)}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in MODULES:
        raise FileFormatError(f"{where} has unknown type {short_repr(kind)} (known: {', '.join(MODULES)})")
    config = {k: value_from_json(v, {}, where) for k, v in data["config"].items()}
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # initialising meta tensors does nothing; its warnings are noise
            module = MODULES[kind].build(config)
    except BUILD_ERRORS as err:
        raise FileFormatError(f"{where}: cannot build a {kind} from {short_repr(config)} ({err})") from None
    _assign(module, tensors, f"{where} ({kind})")
    return module


def _assign(module: nn.Module, tensors: dict[str, Tensor], where: str) -> None:
    """Give ``module`` the file's tensors after checking their names, shapes and kinds."""
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise FileFormatError(f"{where}: tensors missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, want in expected.items():
        got = tensors[key]
        if got.shape != want.shape:
            raise FileFormatError(f"{where}: tensor '{key}' has shape {list(got.shape)}, "
                                  f"but the module needs {list(want.shape)}")
        if got.dtype.is_floating_point != want.dtype.is_floating_point or got.dtype.is_complex:
            raise FileFormatError(f"{where}: tensor '{key}' is {got.dtype}, the module needs {want.dtype}")
    module.load_state_dict(tensors, assign=True)
