"""Reader for the IDX format of (Fashion-)MNIST, plain or gzip-compressed."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from snncal.core.files import FileFormatError

__all__ = [
    "read_idx",
]

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file: magic ``00 00 <dtype> <ndim>``, ``ndim`` big-endian uint32 sizes, data.

    Raises:
        FileNotFoundError: no file at ``path``.
        FileFormatError: the file (or its gzip stream) is damaged or not IDX.
    """
    data = _read(Path(path))
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise FileFormatError(f"{path} is not an IDX file (bad magic {data[:4].hex()})")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise FileFormatError(f"{path}: truncated IDX header ({ndim} sizes need {offset} bytes, "
                              f"the file holds {len(data)})")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - offset != expected:
        raise FileFormatError(f"{path}: header says {dims} but holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def _read(path: Path) -> bytes:
    """The file's bytes, decompressed if it ends in ``.gz``."""
    if path.is_dir() or not path.exists():
        raise FileNotFoundError(f"no IDX file at {path}")
    if path.suffix != ".gz":
        return path.read_bytes()
    with gzip.open(path, "rb") as f:
        try:
            return f.read()
        except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            raise FileFormatError(f"{path}: corrupt gzip stream ({type(err).__name__}: {err})") from None
