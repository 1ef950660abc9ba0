"""Atomic file writes and model checkpoints (safetensors weights + JSON metadata).

A checkpoint named ``PATH`` is two files:

* ``PATH.safetensors``: the state dict, with the metadata also embedded as JSON in the
  safetensors header (key ``"snncal"``), so the one file is self-contained and written atomically;
* ``PATH.json``: the same metadata, pretty-printed, for people and tools.

The metadata holds at least ``arch`` (a :mod:`snncal.models` name), ``num_classes``, ``width`` and
``model_kwargs``; the zoo's checkpoints also carry ``dataset``, ``normalize`` (mean/std; the
``Normalize`` module is inside the model, so its buffers are in the weights too), accuracy, epoch
and the training recipe.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "checkpoint_paths",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]

FORMAT = "snncal-checkpoint/1"
_META_KEY = "snncal"


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temp file in the same folder, fsync, then ``os.replace`` it onto path.

    Readers see the old file or the new one, never a torn one, even after ``kill -9``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _file_mode(path: Path) -> int:
    """The mode of the file being replaced, else 0666 minus the process umask."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """:func:`atomic_write_text` of ``obj`` as indented JSON with a trailing newline."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(PATH.safetensors, PATH.json)`` for a checkpoint name given with or without a suffix."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Save ``model``'s state dict and ``meta`` atomically; returns the ``.safetensors`` path.

    ``meta`` must be JSON-serialisable and name the architecture (``arch``) so that
    :func:`load_checkpoint` can rebuild the model.
    """
    if "arch" not in meta:
        raise ValueError("checkpoint metadata needs an 'arch' entry (a snncal.models name)")
    meta = {"format": FORMAT, **meta}
    text = json.dumps(meta, sort_keys=True)
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in _state(model).items()}
    weights, sidecar = checkpoint_paths(path)
    atomic_write_bytes(weights, st_save(tensors, metadata={_META_KEY: text}))
    atomic_write_json(sidecar, meta)
    return weights


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "module", model)  # DDP / AveragedModel wrappers
    return model.state_dict()


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata in the header of a snncal checkpoint (ANN or SNN), without loading weights."""
    weights, _ = checkpoint_paths(path)
    if not weights.exists():
        raise FileNotFoundError(f"no checkpoint at {weights}")
    with safe_open(str(weights), framework="pt") as f:
        header = f.metadata() or {}
    if _META_KEY not in header:
        raise ValueError(f"{weights} has no snncal metadata; was it written by snncal?")
    return json.loads(header[_META_KEY])


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The raw ``(state_dict, meta)`` of a checkpoint, for models outside the registry."""
    meta = read_meta(path)
    return st_load(checkpoint_paths(path)[0].read_bytes()), meta


def model_from_meta(meta: dict[str, Any]) -> nn.Module:
    """An untrained zoo model of the architecture a checkpoint's metadata describes."""
    import snncal.models as zoo

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
