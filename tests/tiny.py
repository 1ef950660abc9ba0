"""Tiny data sets in the layouts snncal reads, and a one-epoch ANN trained on one (no network)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

FAST = ["--threads", "1", "--no-progress"]


def images(n: int, seed: int, size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten classes; class k has a bright patch at a class-specific place, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    out = rng.integers(0, 64, (n, size, size, channels), dtype=np.uint8)
    for i, k in enumerate(labels):
        r, c = divmod(int(k), 4)
        out[i, 6 * r + 2 : 6 * r + 7, 6 * c + 2 : 6 * c + 7] = 255
    return out, labels


def idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as a gzip-compressed IDX file (the Fashion-MNIST format)."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def fashion_mnist(root: Path) -> Path:
    """A tiny Fashion-MNIST in the Debian package's layout: 200 train and 100 test images."""
    for prefix, n, seed in (("train", 200, 0), ("t10k", 100, 1)):
        x, y = images(n, seed, 28, 1)
        idx(root / f"{prefix}-images-idx3-ubyte.gz", x[..., 0])
        idx(root / f"{prefix}-labels-idx1-ubyte.gz", y)
    return root
