"""A converted graph as JSON data: its nodes, the modules they call, and the tables of what may appear.

Nothing here is code. A node names its function from :data:`FUNCTIONS`, its method from
:data:`METHODS`, and its module by a path into :data:`~snncal.core.export.module_data.MODULES`, a
table from module type to an exporter / builder pair (:mod:`~snncal.core.export.module_data`);
constants are JSON values, with the few Python values JSON lacks tagged
(:mod:`~snncal.core.export.values`). Those names are re-exported here.

Tensors (weights, neuron thresholds and initial potentials, buffers read by ``get_attr``) travel
separately, under their names in the graph module; the data only records their shapes, so that a
file whose tensors do not match its graph is rejected before anything runs. Building a graph checks
every name, target and shape and raises :class:`~snncal.core.files.FileFormatError` for the first
problem; modules are built on the ``meta`` device, so a damaged size never allocates memory.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from typing import Any

from torch import Tensor, fx, nn

from snncal.core.export.module_data import BUILD_ERRORS, MODULES, ModuleSpec, build_module, module_data
from snncal.core.export.values import short_repr, value_from_json, value_to_json
from snncal.core.files import FileFormatError
from snncal.core.graph import ops

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
            modules[node.target] = module_data(module, node.target)
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
        raise FileFormatError(f"the graph is {short_repr(data)}, not an object")
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
    except (*BUILD_ERRORS, SyntaxError, NameError) as err:
        raise FileFormatError(f"the graph does not compile ({type(err).__name__}: {err})") from None
    return gm


def _field(data: dict, key: str, kind: type) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise FileFormatError(f"the graph's '{key}' is {short_repr(value)}, not a {kind.__name__}")
    return value


def _install_modules(root: nn.Module, modules: dict, tensors: dict[str, Tensor]) -> set[str]:
    """Build and place every module (parents first); returns the tensor names they took."""
    claimed = set()
    for path in sorted(modules, key=lambda p: p.count(".")):
        prefix = f"{_checked_path(path, 'module')}."
        own = {k[len(prefix) :]: v for k, v in tensors.items()
               if k.startswith(prefix) and "." not in k[len(prefix) :]}
        _place(root, path, build_module(modules[path], path, own))
        claimed |= {prefix + k for k in own}
    return claimed


def _install_attributes(
    root: nn.Module, attributes: dict, modules: dict, tensors: dict[str, Tensor]
) -> set[str]:
    """Place the tensors ``get_attr`` nodes read; returns their names."""
    for path, info in attributes.items():
        _checked_path(path, "attribute")
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise FileFormatError(f"attribute '{path}': malformed entry {short_repr(info)}")
        value = tensors.get(path)
        if value is None:
            raise FileFormatError(f"attribute '{path}' has no tensor in the file")
        dtype = value_from_json(info.get("dtype"), {}, f"attribute '{path}'")
        if list(value.shape) != info["shape"] or value.dtype != dtype:
            raise FileFormatError(f"attribute '{path}': tensor of shape {list(value.shape)} ({value.dtype}), "
                                  f"but the graph needs {short_repr(info['shape'])} ({dtype})")
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
        raise FileFormatError(f"{what} name {short_repr(path)} is not a dotted Python name")
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
        raise FileFormatError(f"node {index} is malformed or misnamed: {short_repr(item)}")
    name = item["name"]
    where = f"node '{name}'"
    if name in defined:
        raise FileFormatError(f"{where} is defined twice")
    op, args, kwargs = item.get("op"), item.get("args"), item.get("kwargs")
    if op not in _OPS:
        raise FileFormatError(f"{where} has unknown op {short_repr(op)} (known: {', '.join(_OPS)})")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise FileFormatError(f"{where}: malformed args {short_repr(args)} / kwargs {short_repr(kwargs)}")
    if not all(_is_name(k) for k in kwargs):
        raise FileFormatError(f"{where}: keyword argument names {short_repr(list(kwargs))} are not all names")
    target = _target(op, item.get("target"), where, modules, attributes)
    if (op == "call_method" and not args) or (op == "output" and len(args) != 1):
        raise FileFormatError(f"{where}: {op} with {len(args)} arguments")
    args = tuple(value_from_json(a, defined, where) for a in args)
    kwargs = {k: value_from_json(v, defined, where) for k, v in kwargs.items()}
    if target is getattr and not (len(args) == 2 and isinstance(args[1], str) and args[1][:1].isalpha()):
        raise FileFormatError(f"{where}: getattr of {short_repr(args[1:])}; only public attributes")
    return graph.create_node(op, target, args, kwargs, name=name)


def _target(op: str, target: Any, where: str, modules: dict, attributes: dict) -> Any:
    """The callable, method name or path a node of ``op`` refers to, checked against the tables."""
    if not isinstance(target, str):
        raise FileFormatError(f"{where}: target {short_repr(target)} is not a name")
    if op == "call_function":
        if target not in FUNCTIONS:
            raise FileFormatError(f"{where} calls unknown function {short_repr(target)}")
        return FUNCTIONS[target]
    if op == "call_method" and target not in METHODS:
        raise FileFormatError(f"{where} calls unknown method {short_repr(target)}")
    if op == "call_module" and target not in modules:
        raise FileFormatError(f"{where} calls module {short_repr(target)}, which the file does not describe")
    if op == "get_attr" and target not in attributes:
        raise FileFormatError(f"{where} reads attribute {short_repr(target)}, "
                              "which the file does not describe")
    if op == "placeholder" and not _is_name(target):
        raise FileFormatError(f"{where}: input name {short_repr(target)} is not a Python name")
    if op == "output" and target != "output":
        raise FileFormatError(f"{where}: output node with target {short_repr(target)}")
    return target
