"""ANN checkpoints of the zoo: the state dict and metadata as a safetensors + JSON pair.

The file format is :mod:`snncal.core.files`'s; this module adds what a zoo model needs. The
metadata holds at least ``arch`` (a :mod:`snncal.ann.models` name), ``num_classes``, ``width``
and ``model_kwargs``; the zoo's checkpoints also carry ``dataset``, ``normalize`` (mean/std; the
``Normalize`` module is inside the model, so its buffers are in the weights too), accuracy, epoch
and the training recipe.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from snncal.core.files import FileFormatError, checkpoint_paths, read_tensors, write_tensors

__all__ = ["FORMAT", "digest", "load_checkpoint", "model_from_meta", "read_checkpoint", "save_checkpoint"]

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
    """The raw ``(state_dict, meta)`` of an ANN checkpoint, for models outside the registry."""
    state, meta = read_tensors(path)
    if meta.get("format") != FORMAT or not isinstance(meta.get("arch"), str):
        raise FileFormatError(f"{path} is not an ANN checkpoint of snncal (format {meta.get('format')!r}, "
                              f"arch {meta.get('arch')!r})")
    return state, meta


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
    disagrees raises a ValueError saying so.
    """
    state, meta = read_checkpoint(path)
    if arch is not None and meta["arch"] != arch:
        raise ValueError(f"checkpoint {path} holds arch {meta['arch']!r}, not {arch!r}")
    n = meta.get("num_classes")
    if num_classes is not None and n != num_classes:
        raise ValueError(f"checkpoint {path} has {n} classes, not {num_classes}")
    model = model_from_meta(meta)
    _check_shapes(model, state, meta, path)
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def _check_shapes(model: nn.Module, state: dict, meta: dict, path: str | Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and expected[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        detail = "; ".join(
            s
            for s in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {unexpected[:5]}" if unexpected else "",
                ", ".join(
                    f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                    for k in wrong[:5]
                ),
            )
            if s
        )
        raise ValueError(
            f"checkpoint {path} does not match arch {meta['arch']!r} with "
            f"num_classes={meta.get('num_classes')}, width={meta.get('width', 1.0)}: {detail}"
        )


def digest(path: str | Path) -> str:
    """The first 16 hex digits of the SHA-256 of a checkpoint's weights: which model a result is of."""
    weights, _ = checkpoint_paths(path)
    if not weights.exists():
        raise FileNotFoundError(f"no checkpoint at {weights}")
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
