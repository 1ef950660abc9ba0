"""Subsets of a data set, named so that every table can say which images it used.

Two ideas, one home each: a *seeded random draw* (calibration images, short training runs: the same
seed gives the same images) and *evenly spaced* images (a fixed evaluation subset that covers every
class even when the split is sorted by class, as ImageFolder copies are).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Subset

__all__ = [
    "describe_subset",
    "evenly_spaced",
    "random_indices",
]


def random_indices(total: int, n: int, seed: int) -> list[int]:
    """``min(n, total)`` distinct indices of ``range(total)``, in the order a seeded permutation
    draws them."""
    if n < 1:
        raise ValueError(f"a subset needs at least one image, got n={n}")
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].tolist()


def evenly_spaced(dataset: Dataset, n: int | None) -> Dataset:
    """``n`` images evenly spaced through ``dataset`` (indices ``i * len // n``), or all of it."""
    total = len(dataset)  # type: ignore[arg-type]
    if n is None or n >= total:
        return dataset
    if n < 1:
        raise ValueError(f"a subset needs at least one image, got n={n}")
    return Subset(dataset, [i * total // n for i in range(n)])


def describe_subset(n: int, total: int) -> str:
    """How :func:`evenly_spaced` is described in tables and logs."""
    if n >= total:
        return f"all {total} test images"
    k = total // n
    suffix = "th" if k % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    step = f"every {k}{suffix}" if total % n == 0 else f"indices i * {total} // {n}"
    return f"{n} of {total} test images ({step})"
