"""Where and how a run computes: the device, the thread count, the output folder, the data of a
checkpoint. Each is checked before any expensive work, with one clear error."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = [
    "check_out_dir",
    "device",
    "evaluation_split",
    "set_threads",
    "splits",
    "training_split",
]

log = logging.getLogger("snncal")


def device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``, ...; a device that does not
    exist here is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but this machine has no CUDA GPU (use cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} asked for, but this machine has "
                             f"{torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type != "cpu":
        raise ValueError(f"device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
    return dev


def set_threads(threads: int | None) -> int:
    """Use ``threads`` CPU threads (``None``: torch's default, one per physical core) and return the
    count. Results of calibration depend on it (float sums split across threads), not on the load."""
    if threads is not None:
        torch.set_num_threads(threads)
    log.info("using %d CPU threads", torch.get_num_threads())
    return torch.get_num_threads()


def check_out_dir(path: str | Path) -> Path:
    """``path`` as an output folder: it may exist as a folder, or not yet; a file there is an error."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise ValueError(f"--out {path}: {p} is a file, not a folder")
    return path


def splits(meta: dict[str, Any], name: str | None, root: str | None) -> tuple[str, Dataset, Dataset]:
    """(data set name, calibration split = train without augmentation, test split) for a model
    whose checkpoint ``meta`` is given; the images must have the shape the model was trained on."""
    from snncal.ann.data import build_dataset

    name = name or meta.get("dataset")
    if name is None:
        raise ValueError("the checkpoint does not name its data set; pass --dataset")
    calib = build_dataset(name, root, "train", augment="none")
    test = build_dataset(name, root, "test")
    _check_shape(meta, calib, name)
    return name, calib, test


def training_split(name: str, root: str | None, methods: Sequence[str]) -> Dataset | None:
    """The labelled training split with crop + flip (Rathi et al.'s augmentation) when one of
    ``methods`` trains the converted network (``hybrid``), else ``None``; under
    ``torch.distributed``, this rank's shard of it."""
    from snncal.ann.data import build_dataset
    from snncal.core import distributed as dist
    from snncal.core.calibrate import get_method

    if not any(get_method(m).after for m in methods):
        return None
    return dist.shard(build_dataset(name, root, "train", augment="basic"))


def evaluation_split(meta: dict[str, Any], name: str | None, root: str | None) -> tuple[str, Dataset]:
    """(data set name, test split) for a model whose metadata is ``meta``."""
    from snncal.ann.data import build_dataset

    name = name or meta.get("dataset")
    if name is None:
        raise ValueError("the checkpoint does not name its data set; pass --dataset")
    test = build_dataset(name, root, "test")
    _check_shape(meta, test, name)
    return name, test


def _check_shape(meta: dict[str, Any], data: Dataset, name: str) -> None:
    expected = meta.get("input_size") or meta.get("input_shape")
    got = list(data[0][0].shape)
    if expected is not None and list(expected) != got:
        raise ValueError(f"the model takes inputs of shape {list(expected)} but {name} images are "
                         f"{got}: pass the data set it was trained on (--dataset, --data-dir)")
