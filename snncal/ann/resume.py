"""The resume state of a training run: ``out/state.pt``, written atomically after every epoch and
read weights-only, and the check that a resumed run has the settings it was started with."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import torch

from snncal.core.files import atomic_write_bytes

__all__ = ["RESUMABLE_CHANGES", "check_resumable", "load_state", "save_state"]

# Settings that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = {"out_dir", "data_dir", "workers", "device", "progress", "threads", "resume"}


def save_state(path: Path, **state: Any) -> None:
    """Write the resume state ``state`` (tensors and plain data) to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: Path) -> dict[str, Any] | None:
    """The resume state: tensors and plain data only, read weights-only, so that no file placed in
    a run folder can run code."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # an unpickling error names what the file tried to load
        raise ValueError(f"{path} is not a resume state written by snncal train ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200]}); delete it or use another out_dir") from None
    missing = {"model", "optimizer", "scheduler", "config", "epoch", "history", "best"} - set(state)
    if not isinstance(state, dict) or missing:
        raise ValueError(f"{path} is not a resume state written by snncal train (missing "
                         f"{sorted(missing)}); delete it or use another out_dir")
    return state


def check_resumable(saved: dict[str, Any], cfg: Any) -> None:
    """Refuse to resume a run whose settings (a ``TrainConfig``) differ from the ``saved`` ones
    in anything but :data:`RESUMABLE_CHANGES`."""
    now = dataclasses.asdict(cfg)
    diff = {k: (saved.get(k), v) for k, v in now.items() if k not in RESUMABLE_CHANGES}
    diff = {k: sv for k, sv in diff.items() if sv[0] != sv[1]}
    if diff:
        text = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"{cfg.out_dir}/state.pt was written with other settings ({text}); "
            "use another out_dir or resume=False"
        )
