"""Compact storage of spike trains for the calibration sweep.

A neuron's output for the calibration set is binary, ``[T, N, *shape]``: ``T * N * prod(shape)``
bytes as bool, an eighth of that bit-packed. Each minibatch is kept as bool while the sweep's
in-memory total stays under its budget (fastest to read back), else bit-packed, else spilled to a
temporary directory and streamed back, so a large set is slower, never a failure.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "MemoryBudget",
    "SpikeStore",
    "pack",
    "spill_folder",
    "unpack",
]

_BITS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def pack(spikes: Tensor) -> Tensor:
    """Bool tensor -> uint8 tensor of ``ceil(numel / 8)`` bytes."""
    flat = spikes.reshape(-1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    bits = flat.view(-1, 8).to(torch.uint8)
    return (bits * _BITS.to(bits.device)).sum(1, dtype=torch.uint8)


def unpack(packed: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`pack`: a bool tensor of ``shape``."""
    bits = (packed[:, None] & _BITS.to(packed.device)) != 0
    return bits.view(-1)[: math.prod(shape)].view(shape)


class MemoryBudget:
    """The bytes of memory a sweep has left for spike trains and kept input currents, shared by
    all its stores and layers: each takes before it keeps, and gives back when it frees."""

    def __init__(self, nbytes: int) -> None:
        self.left = nbytes

    def take(self, nbytes: int, share: int = 1) -> bool:
        """Take ``nbytes`` if they are at most ``1 / share`` of what is left; whether it did."""
        if nbytes > self.left // share:
            return False
        self.left -= nbytes
        return True

    def give(self, nbytes: int) -> None:
        """Give ``nbytes`` back."""
        self.left += nbytes

    def __repr__(self) -> str:
        return f"MemoryBudget({self.left} bytes left)"


@dataclass
class SpikeStore:
    """Spike trains of one neuron, one entry per calibration minibatch, packed in memory or on disk.

    ``budget`` is shared by all stores of a sweep, so that the total in memory stays under it.
    """

    budget: MemoryBudget
    spill_dir: Callable[[], str]  # the folder for spilled minibatches, made when first needed
    entries: list[tuple[Tensor | str, tuple[int, ...]]] = field(default_factory=list)

    def append(self, spikes: Tensor) -> None:
        """Keep a bool minibatch ``[T, B, ...]``."""
        if self.budget.take(spikes.numel(), share=2):  # leave room for the packed layers after it
            self.entries.append((spikes, tuple(spikes.shape)))
            return
        packed = pack(spikes)
        if self.budget.take(packed.numel()):
            self.entries.append((packed, tuple(spikes.shape)))
        else:
            fd, path = tempfile.mkstemp(suffix=".pt", dir=self.spill_dir())
            os.close(fd)
            torch.save(packed.cpu(), path)
            self.entries.append((path, tuple(spikes.shape)))

    def load(self, index: int, device: torch.device | str = "cpu") -> Tensor:
        """Spikes of minibatch ``index`` as a bool tensor ``[T, B, ...]``."""
        packed, shape = self.entries[index]
        if isinstance(packed, str):
            packed = torch.load(packed, weights_only=True)
        if packed.dtype == torch.bool:
            return packed.to(device)
        return unpack(packed.to(device), shape)

    def free(self) -> None:
        for packed, _ in self.entries:
            if isinstance(packed, str):
                os.remove(packed)
            else:
                self.budget.give(packed.numel())
        self.entries.clear()


_SPILL = re.compile(r"snncal-(\d+)-")


def spill_folder(root: str | Path | None = None) -> Path:
    """A new folder ``snncal-<pid>-*`` for spilled spike trains under ``root`` (default: the
    system's temporary folder), after removing those of processes that no longer run: a killed
    calibration cannot clean up after itself, the next one does."""
    root = Path(root or tempfile.gettempdir())
    for old in root.glob("snncal-*-*"):
        match = _SPILL.match(old.name)
        if match and old.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"snncal-{os.getpid()}-", dir=root))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
