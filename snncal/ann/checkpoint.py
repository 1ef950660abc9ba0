"""ANN checkpoints of the zoo: the state dict and metadata as a safetensors + JSON pair.

The file format is :mod:`snncal.core.files`'s; this module adds what a zoo model needs. The
metadata holds at least ``arch`` (a :mod:`snncal.ann.models` name), ``num_classes``, ``width``
and ``model_kwargs``; the zoo's checkpoints also carry ``dataset``, ``normalize`` (mean/std; the
``Normalize`` module is inside the model, so its buffers are in the weights too), accuracy, epoch
and the training recipe.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from snncal.core.files import FileFormatError, checkpoint_paths, read_tensors, write_tensors

__all__ = [
    "FORMAT",
    "digest",
    "load_checkpoint",
    "model_from_meta",
    "read_checkpoint",
    "save_checkpoint",
]

FORMAT = "snncal-checkpoint/1"


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Save ``model``'s state dict and ``meta`` atomically; returns the ``.safetensors`` path.

    ``meta`` must be JSON-serialisable and name the architecture (``arch``) so that
    :func:`load_checkpoint` can rebuild the model.
    """
    if "arch" not in meta:
        raise ValueError("checkpoint metadata needs an 'arch' entry (a snncal.ann.models name)")
    return write_tensors(path, _state(model), {"format": FORMAT, **meta})


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "module", model)  # DDP / AveragedModel wrappers
    return model.state_dict()


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The raw ``(state_dict, meta)`` of an ANN checkpoint, for models outside the registry.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        FileFormatError: the file is damaged, not an ANN checkpoint, or its metadata is malformed.
    """
    state, meta = read_tensors(path)
    if meta.get("format") != FORMAT or not isinstance(meta.get("arch"), str):
        raise FileFormatError(f"{path} is not an ANN checkpoint of snncal (format {meta.get('format')!r}, "
                              f"arch {meta.get('arch')!r})")
    problem = _meta_problem(meta)
    if problem:
        raise FileFormatError(f"{path}: malformed metadata: {problem}")
    return state, meta


def _meta_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with the fields :func:`model_from_meta` reads, or ``None``."""
    n, width, kwargs = meta.get("num_classes"), meta.get("width", 1.0), meta.get("model_kwargs", {})
    norm = meta.get("normalize") or {}
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        return f"num_classes = {n!r}, not a positive integer"
    if not isinstance(width, (int, float)) or isinstance(width, bool) or not width > 0:
        return f"width = {width!r}, not a positive number"
    if not isinstance(kwargs, dict):
        return f"model_kwargs = {kwargs!r}, not an object"
    if not isinstance(norm, dict) or not all(
        norm.get(k) is None or _numbers(norm[k]) for k in ("mean", "std")
    ):
        return f"normalize = {norm!r}, not an object of number lists"
    return None


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )


def model_from_meta(meta: dict[str, Any]) -> nn.Module:
    """An untrained zoo model of the architecture a checkpoint's metadata describes."""
    import snncal.ann.models as zoo

    norm = meta.get("normalize") or {}
    n = meta.get("num_classes")
    return zoo.create(
        meta["arch"], num_classes=n if n is not None else 10, width=meta.get("width", 1.0),
        mean=norm.get("mean"), std=norm.get("std"), **meta.get("model_kwargs", {}),
    )


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    arch: str | None = None,
    num_classes: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a zoo model from its checkpoint; returns ``(model in eval mode, meta)``.

    ``arch`` / ``num_classes``, when given, are what the caller expects; a checkpoint that
    disagrees raises a ValueError saying so. The model is built on the ``meta`` device and takes
    the file's tensors, so a damaged size in the metadata never allocates memory.
    """
    state, meta = read_checkpoint(path)
    if arch is not None and meta["arch"] != arch:
        raise ValueError(f"checkpoint {path} holds arch {meta['arch']!r}, not {arch!r}")
    n = meta.get("num_classes")
    if num_classes is not None and n != num_classes:
        raise ValueError(f"checkpoint {path} has {n} classes, not {num_classes}")
    model = _empty_model(meta, path)
    expected = model.state_dict()
    _check_shapes(expected, state, meta, path)
    state = OrderedDict(state)
    state._metadata = expected._metadata  # module versions (torchvision's MNASNet checks its own)
    model.load_state_dict(state, assign=True)
    return model.to(device).eval(), meta


def _empty_model(meta: dict[str, Any], path: str | Path) -> nn.Module:
    """The model ``meta`` describes, on the ``meta`` device where its constructor allows."""
    try:
        try:
            with torch.device("meta"):
                return model_from_meta(meta)
        except NotImplementedError:  # a constructor that computes with tensors (torchvision's RegNet)
            return model_from_meta(meta)
    except (TypeError, ValueError, KeyError, RuntimeError, OverflowError) as err:
        raise FileFormatError(f"checkpoint {path}: cannot build the model its metadata describes "
                              f"({type(err).__name__}: {err})") from None


def _check_shapes(expected: dict, state: dict, meta: dict, path: str | Path) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and (
        expected[k].shape != state[k].shape or expected[k].dtype != state[k].dtype)]
    if missing or unexpected or wrong:
        detail = "; ".join(
            s
            for s in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {unexpected[:5]}" if unexpected else "",
                ", ".join(
                    f"{k}: file {tuple(state[k].shape)} {state[k].dtype} vs model "
                    f"{tuple(expected[k].shape)} {expected[k].dtype}"
                    for k in wrong[:5]
                ),
            )
            if s
        )
        raise FileFormatError(
            f"checkpoint {path} does not match arch {meta['arch']!r} with "
            f"num_classes={meta.get('num_classes')}, width={meta.get('width', 1.0)}: {detail}"
        )


def digest(path: str | Path) -> str:
    """The first 16 hex digits of the SHA-256 of a checkpoint's weights: which model a result is of."""
    weights, _ = checkpoint_paths(path)
    if not weights.exists():
        raise FileNotFoundError(f"no checkpoint at {weights}")
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
