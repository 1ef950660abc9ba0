"""The layers of the package, as its imports draw them: the core (graph, neuron, engine, observers,
calibration, evaluation, export) under the ANN side (zoo, data, training) under the product
(experiments, results, reports, CLI). An import that runs back up fails here."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import snncal

PACKAGE = Path(snncal.__file__).parent
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
# a layer and the layers it must never import, at module level or inside a function
FORBIDDEN = {"core": ("snncal.ann", "snncal.app"), "ann": ("snncal.app",)}


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved."""
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found |= {module} | {f"{module}.{a.name}" for a in node.names}
    return found


@pytest.mark.parametrize("path", MODULES, ids=[_name(p) for p in MODULES])
def test_imports_run_downward_only(path):
    layer = _name(path).split(".")[1] if "." in _name(path) else ""
    forbidden = FORBIDDEN.get(layer, ())
    bad = sorted(m for m in _imports(path) for f in forbidden if m == f or m.startswith(f + "."))
    assert not bad, f"{_name(path)} (layer {layer}) imports {bad}"


PUBLIC = [p for p in MODULES if not p.name.startswith("_") or p.name == "__init__.py"]


@pytest.mark.parametrize("path", PUBLIC, ids=[_name(p) for p in PUBLIC])
def test_all_lists_what_each_public_module_exports(path):
    tree = ast.parse(path.read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    public = {n for n in defined if not n.startswith("_")}
    module = importlib.import_module(_name(path))
    if not public and not hasattr(module, "__all__"):
        return  # a package face that only names its layer
    exported = set(module.__all__)
    assert public <= exported, f"{_name(path)}: missing from __all__: {sorted(public - exported)}"
    assert all(hasattr(module, n) for n in exported), f"{_name(path)}: __all__ names what is not there"


def test_the_public_api_is_the_cores():
    for name in snncal.__all__:
        origin = getattr(getattr(snncal, name), "__module__", "")
        assert origin.startswith("snncal.core"), f"snncal.{name} comes from {origin}"
