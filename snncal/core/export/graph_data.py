"""A converted graph as JSON data: its nodes, the modules they call, and the tables of what may appear.

Nothing here is code. A node names its function from :data:`FUNCTIONS`, its method from
:data:`METHODS`, and its module by a path into :data:`MODULES`, a table from module type to an
exporter / builder pair; constants are JSON values, with the few Python values JSON lacks tagged::

    {"node": "x"}            a reference to an earlier node
    {"tuple": [1, 2]}        a tuple (a JSON list stays a list)
    {"slice": [0, null, 2]}  slice(0, None, 2)
    {"float": "inf"}         inf, -inf, nan
    {"ellipsis": null}       ...
    {"dtype": "float32"}     torch.float32
    {"dict": [["k", 1]]}     a dict

Tensors (weights, neuron thresholds and initial potentials, buffers read by ``get_attr``) travel
separately, under their names in the graph module; the data only records their shapes, so that a
file whose tensors do not match its graph is rejected before anything runs. Building a graph checks
every name, target and shape and raises :class:`~snncal.core.files.FileFormatError` for the first
problem; modules are built on the ``meta`` device, so a damaged size never allocates memory.
"""

from __future__ import annotations

import keyword
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from snncal.core.files import FileFormatError
from snncal.core.graph import ops
from snncal.core.neuron import IFNeuron

__all__ = [
    "FUNCTIONS",
    "METHODS",
    "MODULES",
    "ModuleSpec",
    "build_graph",
    "graph_data",
    "value_from_json",
    "value_to_json",
]

FUNCTIONS: dict[str, Callable] = {op.name: op.target for op in ops.FUNCTIONS.values()}
"""The functions a converted graph may call, by stable name (the op table's)."""

METHODS = frozenset(ops.METHODS)
"""The tensor methods a converted graph may call."""

_FUNCTION_NAMES = {fn: name for name, fn in FUNCTIONS.items()}
_OPS = ("placeholder", "get_attr", "call_function", "call_method", "call_module", "output")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PART = re.compile(r"[A-Za-z0-9_]+")  # a submodule's name: `layers`, `0`, `13_if` (a converted pool)
_TAGS = ("node", "tuple", "slice", "float", "ellipsis", "dtype", "dict")
_BUILD_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError, OverflowError)


# ----------------------------------------------------------------------------- constants
def value_to_json(value: Any, where: str) -> Any:
    """The JSON form of an argument or configuration value (see the module docstring)."""
    if isinstance(value, fx.Node):
        return {"node": value.name}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, tuple):
        return {"tuple": [value_to_json(v, where) for v in value]}
    if isinstance(value, list):
        return [value_to_json(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": [[k, value_to_json(v, where)] for k, v in value.items()]}
    if isinstance(value, slice):
        return {"slice": [value_to_json(v, where) for v in (value.start, value.stop, value.step)]}
    if value is Ellipsis:
        return {"ellipsis": None}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    raise ValueError(f"{where}: cannot save the constant {value!r} ({type(value).__name__}) as data")


def value_from_json(data: Any, nodes: dict[str, fx.Node], where: str) -> Any:
    """The value :func:`value_to_json` wrote; ``nodes`` maps names to the nodes defined so far."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [value_from_json(v, nodes, where) for v in data]
    if not isinstance(data, dict) or len(data) != 1 or next(iter(data)) not in _TAGS:
        raise FileFormatError(f"{where}: unknown constant {_short(data)}")
    tag, body = next(iter(data.items()))
    return _DECODERS[tag](body, nodes, where)


def _node_ref(body: Any, nodes: dict[str, fx.Node], where: str) -> fx.Node:
    if not isinstance(body, str) or body not in nodes:
        raise FileFormatError(f"{where}: refers to node {_short(body)}, which is not defined before it")
    return nodes[body]


def _sequence(body: Any, nodes: dict[str, fx.Node], where: str, length: int | None = None) -> list:
    if not isinstance(body, list) or (length is not None and len(body) != length):
        raise FileFormatError(f"{where}: malformed constant {_short(body)}")
    return [value_from_json(v, nodes, where) for v in body]


def _float(body: Any, nodes: dict[str, fx.Node], where: str) -> float:
    if body not in ("inf", "-inf", "nan"):
        raise FileFormatError(f"{where}: unknown float {_short(body)}")
    return float(body)


def _ellipsis(body: Any, nodes: dict[str, fx.Node], where: str) -> Any:
    return Ellipsis


def _dtype(body: Any, nodes: dict[str, fx.Node], where: str) -> torch.dtype:
    dtype = getattr(torch, body, None) if isinstance(body, str) and body.isidentifier() else None
    if not isinstance(dtype, torch.dtype):
        raise FileFormatError(f"{where}: unknown dtype {_short(body)}")
    return dtype


def _dict(body: Any, nodes: dict[str, fx.Node], where: str) -> dict:
    if not isinstance(body, list) or not all(
        isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str) for kv in body
    ):
        raise FileFormatError(f"{where}: malformed dict constant {_short(body)}")
    return {k: value_from_json(v, nodes, where) for k, v in body}


_DECODERS = {
    "node": _node_ref,
    "tuple": lambda body, nodes, where: tuple(_sequence(body, nodes, where)),
    "slice": lambda body, nodes, where: slice(*_sequence(body, nodes, where, 3)),
    "float": _float,
    "ellipsis": _ellipsis,
    "dtype": _dtype,
    "dict": _dict,
}


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- modules
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


def _module_data(module: nn.Module, path: str) -> dict[str, Any]:
    name = _TYPE_NAMES.get(type(module))
    if name is None:
        raise ValueError(f"module '{path}' is a {type(module).__name__}, which an SNN file cannot hold "
                         f"(known types: {', '.join(MODULES)})")
    config = MODULES[name].export(module)
    return {"type": name, "config": {k: value_to_json(v, f"module '{path}'") for k, v in config.items()}}


def _build_module(data: Any, path: str, tensors: dict[str, Tensor]) -> nn.Module:
    """The module ``data`` describes, holding ``tensors`` (its ``state_dict``) from the file."""
    where = f"module '{path}'"
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise FileFormatError(f"{where}: malformed entry {_short(data)}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in MODULES:
        raise FileFormatError(f"{where} has unknown type {_short(kind)} (known: {', '.join(MODULES)})")
    config = {k: value_from_json(v, {}, where) for k, v in data["config"].items()}
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # initialising meta tensors does nothing; its warnings are noise
            module = MODULES[kind].build(config)
    except _BUILD_ERRORS as err:
        raise FileFormatError(f"{where}: cannot build a {kind} from {_short(config)} ({err})") from None
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


# ----------------------------------------------------------------------------- graphs
def graph_data(gm: fx.GraphModule) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``(data, tensors)`` of a converted graph: JSON-ready nodes, modules and attribute shapes,
    and every tensor the graph reads, by its name in ``gm``.

    Raises:
        ValueError: a node calls something outside the tables, or holds a constant JSON cannot.
    """
    nodes, modules, attributes, tensors = [], {}, {}, {}
    for node in gm.graph.nodes:
        nodes.append(_node_data(node))
        if node.op == "call_module" and node.target not in modules:
            module = gm.get_submodule(node.target)
            modules[node.target] = _module_data(module, node.target)
            tensors.update({f"{node.target}.{k}": v for k, v in module.state_dict().items()})
        elif node.op == "get_attr" and node.target not in attributes:
            value = _attribute(gm, node.target)
            attributes[node.target] = {"parameter": isinstance(value, nn.Parameter),
                                       "shape": list(value.shape), "dtype": value_to_json(value.dtype, "")}
            tensors[node.target] = value.detach()
    return {"nodes": nodes, "modules": modules, "attributes": attributes}, tensors


def _attribute(gm: fx.GraphModule, target: str) -> Tensor:
    owner, _, name = target.rpartition(".")
    value = getattr(gm.get_submodule(owner), name)
    if not isinstance(value, Tensor):
        raise ValueError(f"get_attr '{target}' reads a {type(value).__name__}; only tensors can be saved")
    return value


def _node_data(node: fx.Node) -> dict[str, Any]:
    where = f"node '{node.name}'"
    target = node.target
    if node.op == "call_function":
        target = _FUNCTION_NAMES.get(target)
        if target is None:
            raise ValueError(f"{where} calls {node.target!r}, which an SNN file cannot hold")
    elif node.op == "call_method" and target not in METHODS:
        raise ValueError(f"{where} calls the method .{target}(), which an SNN file cannot hold")
    return {
        "name": node.name, "op": node.op, "target": target, "args": value_to_json(list(node.args), where),
        "kwargs": {k: value_to_json(v, where) for k, v in node.kwargs.items()},
    }


def build_graph(data: Any, tensors: dict[str, Tensor]) -> fx.GraphModule:
    """The graph module :func:`graph_data` described, holding ``tensors``; every problem raises
    one :class:`FileFormatError` (unknown op, module type or function, a missing node, a tensor of
    the wrong shape, ...)."""
    if not isinstance(data, dict):
        raise FileFormatError(f"the graph is {_short(data)}, not an object")
    modules, attributes, nodes = (
        _field(data, "modules", dict), _field(data, "attributes", dict), _field(data, "nodes", list)
    )
    root = nn.Module()
    claimed = _install_modules(root, modules, tensors)
    claimed |= _install_attributes(root, attributes, modules, tensors)
    unclaimed = sorted(set(tensors) - claimed)
    if unclaimed:
        raise FileFormatError(f"tensors {unclaimed[:5]} belong to no module or attribute of the graph")
    graph = _build_nodes(nodes, modules, attributes)
    try:
        gm = fx.GraphModule(root, graph)
        gm.graph.lint()
    except (*_BUILD_ERRORS, SyntaxError, NameError) as err:
        raise FileFormatError(f"the graph does not compile ({type(err).__name__}: {err})") from None
    return gm


def _field(data: dict, key: str, kind: type) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise FileFormatError(f"the graph's '{key}' is {_short(value)}, not a {kind.__name__}")
    return value


def _install_modules(root: nn.Module, modules: dict, tensors: dict[str, Tensor]) -> set[str]:
    """Build and place every module (parents first); returns the tensor names they took."""
    claimed = set()
    for path in sorted(modules, key=lambda p: p.count(".")):
        prefix = f"{_checked_path(path, 'module')}."
        own = {k[len(prefix) :]: v for k, v in tensors.items()
               if k.startswith(prefix) and "." not in k[len(prefix) :]}
        _place(root, path, _build_module(modules[path], path, own))
        claimed |= {prefix + k for k in own}
    return claimed


def _install_attributes(
    root: nn.Module, attributes: dict, modules: dict, tensors: dict[str, Tensor]
) -> set[str]:
    """Place the tensors ``get_attr`` nodes read; returns their names."""
    for path, info in attributes.items():
        _checked_path(path, "attribute")
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise FileFormatError(f"attribute '{path}': malformed entry {_short(info)}")
        value = tensors.get(path)
        if value is None:
            raise FileFormatError(f"attribute '{path}' has no tensor in the file")
        dtype = value_from_json(info.get("dtype"), {}, f"attribute '{path}'")
        if list(value.shape) != info["shape"] or value.dtype != dtype:
            raise FileFormatError(f"attribute '{path}': tensor of shape {list(value.shape)} ({value.dtype}), "
                                  f"but the graph needs {_short(info['shape'])} ({dtype})")
        owner = path.rpartition(".")[0]
        if owner in modules:  # the tensor of a module the graph also calls, placed with it
            continue
        if info.get("parameter"):
            value = nn.Parameter(value, requires_grad=False)
        _place(root, path, value)
    return set(attributes)


def _is_name(value: Any) -> bool:
    """An ASCII Python name that generated code may assign to (not a keyword, not ``self``)."""
    return (
        isinstance(value, str) and _NAME.fullmatch(value) is not None
        and not keyword.iskeyword(value) and value != "self"
    )


def _checked_path(path: Any, what: str) -> str:
    """``path`` if it is a dotted name (no code can hide in it), else an error."""
    if not isinstance(path, str) or not all(_PART.fullmatch(p) for p in path.split(".")):
        raise FileFormatError(f"{what} name {_short(path)} is not a dotted Python name")
    return path


def _place(root: nn.Module, path: str, value: nn.Module | Tensor) -> None:
    """Put a module or tensor at ``path`` under ``root``, making empty parent modules as needed."""
    *parents, name = path.split(".")
    owner = root
    try:
        for part in parents:
            child = owner._modules.get(part)
            if child is None:
                child = nn.Module()
                owner.add_module(part, child)
            owner = child
        if isinstance(value, nn.Module):
            owner.add_module(name, value)
        elif isinstance(value, nn.Parameter):
            owner.register_parameter(name, value)
        else:
            owner.register_buffer(name, value)
    except (KeyError, TypeError, AttributeError) as err:
        raise FileFormatError(f"cannot place '{path}' in the graph ({err})") from None


def _build_nodes(nodes: list, modules: dict, attributes: dict) -> fx.Graph:
    """The nodes in file order; each may only refer to nodes before it, and the last is the output."""
    graph = fx.Graph()
    defined: dict[str, fx.Node] = {}
    for i, item in enumerate(nodes):
        if defined and next(reversed(defined.values())).op == "output":
            raise FileFormatError(f"node {i} comes after the graph's output")
        node = _build_node(graph, item, i, defined, modules, attributes)
        defined[item["name"]] = node  # a checked name, once _build_node returns
    if not defined or next(reversed(defined.values())).op != "output":
        raise FileFormatError("the graph has no output node")
    return graph


def _build_node(
    graph: fx.Graph, item: Any, index: int, defined: dict[str, fx.Node], modules: dict, attributes: dict
) -> fx.Node:
    """One node of the graph, after checking its op, target and arguments."""
    if not isinstance(item, dict) or not _is_name(item.get("name")):
        raise FileFormatError(f"node {index} is malformed or misnamed: {_short(item)}")
    name = item["name"]
    where = f"node '{name}'"
    if name in defined:
        raise FileFormatError(f"{where} is defined twice")
    op, args, kwargs = item.get("op"), item.get("args"), item.get("kwargs")
    if op not in _OPS:
        raise FileFormatError(f"{where} has unknown op {_short(op)} (known: {', '.join(_OPS)})")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise FileFormatError(f"{where}: malformed args {_short(args)} / kwargs {_short(kwargs)}")
    if not all(_is_name(k) for k in kwargs):
        raise FileFormatError(f"{where}: keyword argument names {_short(list(kwargs))} are not all names")
    target = _target(op, item.get("target"), where, modules, attributes)
    if (op == "call_method" and not args) or (op == "output" and len(args) != 1):
        raise FileFormatError(f"{where}: {op} with {len(args)} arguments")
    args = tuple(value_from_json(a, defined, where) for a in args)
    kwargs = {k: value_from_json(v, defined, where) for k, v in kwargs.items()}
    if target is getattr and not (len(args) == 2 and isinstance(args[1], str) and args[1][:1].isalpha()):
        raise FileFormatError(f"{where}: getattr of {_short(args[1:])}; only public attributes")
    return graph.create_node(op, target, args, kwargs, name=name)


def _target(op: str, target: Any, where: str, modules: dict, attributes: dict) -> Any:
    """The callable, method name or path a node of ``op`` refers to, checked against the tables."""
    if not isinstance(target, str):
        raise FileFormatError(f"{where}: target {_short(target)} is not a name")
    if op == "call_function":
        if target not in FUNCTIONS:
            raise FileFormatError(f"{where} calls unknown function {_short(target)}")
        return FUNCTIONS[target]
    if op == "call_method" and target not in METHODS:
        raise FileFormatError(f"{where} calls unknown method {_short(target)}")
    if op == "call_module" and target not in modules:
        raise FileFormatError(f"{where} calls module {_short(target)}, which the file does not describe")
    if op == "get_attr" and target not in attributes:
        raise FileFormatError(f"{where} reads attribute {_short(target)}, which the file does not describe")
    if op == "placeholder" and not _is_name(target):
        raise FileFormatError(f"{where}: input name {_short(target)} is not a Python name")
    if op == "output" and target != "output":
        raise FileFormatError(f"{where}: output node with target {_short(target)}")
    return target
