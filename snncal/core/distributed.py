"""Process-group helpers: the one place the core talks to ``torch.distributed``.

When a process group is initialised (``torchrun`` sets one up; NCCL on GPUs, gloo on CPUs), each
process (*rank*) holds a share of the data and every statistic is reduced across ranks with these
helpers. Without a process group each of them returns at once and leaves its input untouched, so
the single-process path pays nothing. See docs/distributed.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

__all__ = [
    "all_reduce_max",
    "all_reduce_sum",
    "average_gradients",
    "barrier",
    "broadcast",
    "broadcast_module",
    "is_main",
    "is_parallel",
    "rank",
    "shard",
    "shard_range",
    "share",
    "start",
    "stop",
    "sum_scalars",
    "world_size",
]


def start() -> torch.device | None:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1):
    NCCL with one GPU per local rank when CUDA is there, else gloo. Returns this rank's GPU, or
    ``None`` (no GPU, or a single process)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    cuda = torch.cuda.is_available()
    gpu = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else None
    if gpu is not None:
        torch.cuda.set_device(gpu)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return gpu


def stop(wait: bool = True) -> None:
    """Leave the process group ``start`` joined: after a barrier when ``wait`` (every rank done,
    so rank 0 finishes writing before the others exit), then shut the backend's threads down
    cleanly (a rank that exits with gloo's threads still running aborts). No-op without a group."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait and is_parallel():
        dist.barrier()
    dist.destroy_process_group()


def is_parallel() -> bool:
    """Whether a process group of more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of ranks (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this is rank 0, the one that writes files and logs results."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if is_parallel():
        dist.barrier()


def _buffer(t: Tensor) -> Tensor:
    """``t`` if the backend can use it in place, else a contiguous copy where the backend works
    (NCCL only moves GPU tensors)."""
    if dist.get_backend() == "nccl" and not t.is_cuda:
        return t.to(torch.device("cuda", torch.cuda.current_device()))
    return t if t.is_contiguous() else t.contiguous()


def _reduce(t: Tensor, op: dist.ReduceOp) -> Tensor:
    buf = _buffer(t)
    dist.all_reduce(buf, op)
    return t if buf is t else t.copy_(buf)


def all_reduce_sum(t: Tensor) -> Tensor:
    """``t`` summed over ranks, in place (``t`` itself in one process)."""
    return _reduce(t, dist.ReduceOp.SUM) if is_parallel() else t


def all_reduce_max(t: Tensor) -> Tensor:
    """``t``'s element-wise maximum over ranks, in place (``t`` itself in one process)."""
    return _reduce(t, dist.ReduceOp.MAX) if is_parallel() else t


def sum_scalars(*values: float) -> tuple[float, ...]:
    """Python numbers summed over ranks in one float64 all-reduce (returned as given in one
    process, so the single-process arithmetic is unchanged)."""
    if not is_parallel():
        return values
    return tuple(all_reduce_sum(torch.tensor(values, dtype=torch.float64)).tolist())


def average_gradients(params: Sequence[nn.Parameter], weight: float) -> None:
    """Set every ``p.grad`` to ``sum_r w_r g_r / sum_r w_r``, the gradient of the whole minibatch
    of all ranks when rank ``r`` computed the mean-loss gradient ``g_r`` of its ``w_r`` images.

    One all-reduce of all gradients and the weight, so every rank takes the same step. A missing
    gradient counts as zero (a rank with an empty minibatch passes ``weight=0``). No-op in one
    process.
    """
    if not is_parallel() or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.detach().flatten().float() * weight for g in grads])
    flat = all_reduce_sum(torch.cat([flat, flat.new_tensor([weight])]))
    total = flat[-1].clamp_min(1e-12)
    for p, part in zip(params, flat[:-1].split([p.numel() for p in params])):
        p.grad = (part / total).view_as(p).to(p.dtype)


def broadcast(tensors: Iterable[Tensor], src: int = 0) -> None:
    """Copy ``tensors`` from rank ``src`` to the others, in place, so that float rounding cannot
    leave ranks with different values. No-op in one process."""
    if not is_parallel():
        return
    for t in tensors:
        buf = _buffer(t)
        dist.broadcast(buf, src)
        if buf is not t:
            t.copy_(buf)


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """:func:`broadcast` of every parameter and buffer of ``module``."""
    broadcast([*(p.data for p in module.parameters()), *module.buffers()], src)


def shard_range(n: int, rank: int, world: int) -> range:
    """Rank ``rank``'s contiguous block of ``range(n)`` out of ``world`` blocks; the blocks cover
    every index exactly once (no padding) and differ in size by at most one."""
    return range(rank * n // world, (rank + 1) * n // world)


def share(total: int) -> int:
    """This rank's part of a count split over ranks (``total`` itself in one process)."""
    return len(shard_range(total, rank(), world_size()))


def shard(dataset: Dataset) -> Dataset:
    """This rank's contiguous block of a map-style ``dataset`` (see :func:`shard_range`); the
    dataset itself in one process. Unlike ``DistributedSampler``, nothing is padded, so every item
    is counted exactly once over all ranks."""
    if not is_parallel():
        return dataset
    return Subset(dataset, list(shard_range(len(dataset), rank(), world_size())))  # type: ignore[arg-type]
