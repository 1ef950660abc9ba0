"""Device policy: where a module lives, how large a time-folded batch a device takes, and autocast.

One home for the choices every part of the core makes by device, so that conversion, calibration,
the engine and evaluation agree on them.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

__all__ = [
    "AMP",
    "CUDA_BYTES_PER_STEP",
    "CUDA_MAX_BATCH",
    "MAX_BATCH",
    "auto_max_batch",
    "autocast",
    "cuda_max_batch",
    "module_device",
]

MAX_BATCH = 64  # time-folded batch (steps x images) on a CPU: keeps its caches warm
# GPU memory an image-step may hold: VGG-16 at 224 x 224, the zoo's largest activations, keeps
# two 64 x 224 x 224 float tensors (12.8 MB each) live in its first block, plus conv workspace.
CUDA_BYTES_PER_STEP = 32 << 20
# Bounds of the automatic value on CUDA. 2048 (a chunk of 64 images x 32 steps) already gives a
# ResNet-20 layer 33M elements per op, ~100 x the threads an H200 keeps resident.
CUDA_MAX_BATCH = (256, 2048)
AMP = {"off": None, "bfloat16": torch.bfloat16, "float16": torch.float16}  # autocast dtypes


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``: that of its first parameter, else of its first buffer, else CPU."""
    first = next(iter(module.parameters()), None)
    if first is None:
        first = next(iter(module.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def auto_max_batch(device: torch.device | str, cpu: int = MAX_BATCH) -> int:
    """The default time-folded batch on ``device``: ``cpu`` (:data:`MAX_BATCH`, 64) off CUDA; on CUDA the
    largest power of two whose image-steps fit the GPU's memory at :data:`CUDA_BYTES_PER_STEP`,
    within :data:`CUDA_MAX_BATCH`: 2048 from 80 GB, 1024 at 40 GB, 512 at 24 GB, 256 below."""
    device = torch.device(device)
    if device.type != "cuda":
        return cpu
    return cuda_max_batch(_cuda_memory(device.index))


def cuda_max_batch(total_memory: int) -> int:
    """:func:`auto_max_batch` of a GPU with ``total_memory`` bytes."""
    low, high = CUDA_MAX_BATCH
    fit = max(1, total_memory // CUDA_BYTES_PER_STEP)
    return min(high, max(low, 1 << (fit.bit_length() - 1)))


@functools.cache
def _cuda_memory(index: int | None) -> int:
    index = torch.cuda.current_device() if index is None else index
    return torch.cuda.get_device_properties(index).total_memory


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to the dtype ``amp`` names on ``device`` (a no-op for ``"off"``)."""
    if AMP[amp] is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP[amp])
