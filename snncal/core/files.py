"""Files: atomic writes, plain data, and the safetensors + JSON pair every snncal checkpoint uses.

A checkpoint named ``PATH`` is two files:

* ``PATH.safetensors``: tensors only (never pickled code), with the metadata embedded as JSON in
  the safetensors header (key ``"snncal"``), so the one file is self-contained, and a SHA-256
  digest of the rest of the header and of the tensor data (key ``"sha256"``);
* ``PATH.json``: the same metadata, pretty-printed, for people and tools.

Both are written atomically. Reading checks everything a damaged or foreign file can get wrong and
raises :class:`FileFormatError`, one line that names the file and the problem: a truncated file, a
corrupt header, and (through the digest) any flipped bit. Files written before the digest existed
are read without that check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

__all__ = [
    "FileFormatError",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "checkpoint_paths",
    "read_meta",
    "read_tensors",
    "to_plain",
    "write_tensors",
]

_META_KEY = "snncal"
_DIGEST_KEY = "sha256"


class FileFormatError(ValueError):
    """A file snncal cannot read: truncated, corrupt, foreign, or of an unknown format."""


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
    """:func:`atomic_write_text` of ``to_plain(obj)`` as indented JSON with a trailing newline."""
    return atomic_write_text(path, json.dumps(to_plain(obj), indent=2, sort_keys=True) + "\n")


def to_plain(obj: Any) -> Any:
    """A JSON-ready copy of ``obj``: dataclasses and dicts become dicts, tuples lists, tensors lists,
    non-finite floats ``None``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(PATH.safetensors, PATH.json)`` for a checkpoint name given with or without a suffix."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` with ``meta`` (JSON-ready) as ``PATH.safetensors`` + ``PATH.json``.

    Returns the ``.safetensors`` path.
    """
    meta = to_plain(meta)
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    header = {_META_KEY: json.dumps(meta, sort_keys=True)}
    draft = st_save(tensors, metadata=header)  # the same tensor bytes and offsets, without the digest
    size = int.from_bytes(draft[:8], "little")
    digest = _digest(json.loads(draft[8 : 8 + size]), memoryview(draft)[8 + size :])
    weights, sidecar = checkpoint_paths(path)
    atomic_write_bytes(weights, st_save(tensors, metadata={**header, _DIGEST_KEY: digest}))
    atomic_write_json(sidecar, meta)
    return weights


def _digest(header: dict[str, Any], body: memoryview) -> str:
    """SHA-256 of a safetensors header (canonical JSON, without the digest) and of its tensor bytes."""
    header = {**header, "__metadata__": {
        k: v for k, v in header.get("__metadata__", {}).items() if k != _DIGEST_KEY
    }}
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(canonical)
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def _open(path: str | Path) -> tuple[Path, bytes]:
    weights, _ = checkpoint_paths(path)
    if weights.is_dir() or not weights.exists():
        raise FileNotFoundError(f"no checkpoint at {weights}")
    return weights, weights.read_bytes()


def _parse_header(weights: Path, data: bytes) -> tuple[dict[str, Any], int]:
    """The raw safetensors header of ``data`` (a JSON object) and its length in bytes."""
    if len(data) < 8:
        raise FileFormatError(f"{weights}: not a safetensors file ({len(data)} bytes, truncated?)")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise FileFormatError(f"{weights}: truncated or not a safetensors file (header of {size} bytes "
                              f"in a file of {len(data)})")
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise FileFormatError(f"{weights}: corrupt safetensors header ({err})") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
        raise FileFormatError(f"{weights}: corrupt safetensors header (not a JSON object of tensors)")
    return header, size


def _header(weights: Path, data: bytes) -> dict[str, Any]:
    """The snncal metadata of the safetensors bytes ``data``, checked against the file's digest."""
    header, size = _parse_header(weights, data)
    extra = header.get("__metadata__", {})
    text = extra.get(_META_KEY)
    if text is None:
        raise FileFormatError(f"{weights} has no snncal metadata; was it written by snncal?")
    unknown = sorted(set(extra) - {_META_KEY, _DIGEST_KEY})
    if unknown:
        raise FileFormatError(f"{weights}: unknown header metadata {unknown[:3]} (corrupt file?)")
    if _DIGEST_KEY in extra and extra[_DIGEST_KEY] != _checked_digest(weights, header, data, size):
        raise FileFormatError(f"{weights}: corrupt file (its SHA-256 digest does not match its contents)")
    try:
        meta = json.loads(text)
    except (TypeError, json.JSONDecodeError, RecursionError) as err:
        raise FileFormatError(f"{weights}: corrupt snncal metadata ({err})") from None
    if not isinstance(meta, dict):
        raise FileFormatError(f"{weights}: snncal metadata is {type(meta).__name__}, not an object")
    return meta


def _checked_digest(weights: Path, header: dict[str, Any], data: bytes, size: int) -> str:
    try:
        return _digest(header, memoryview(data)[8 + size :])
    except RecursionError:  # a header nested just below the parser's limit
        raise FileFormatError(f"{weights}: corrupt safetensors header (nested too deeply)") from None


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint, from its safetensors header (the JSON file is for people)."""
    weights, data = _open(path)
    return _header(weights, data)


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ``(tensors, meta)`` of a checkpoint; :class:`FileFormatError` if the file is damaged."""
    weights, data = _open(path)
    meta = _header(weights, data)
    try:
        tensors = st_load(data)
    except Exception as err:  # the parser's errors are not documented: any of them is a corrupt file
        raise FileFormatError(f"{weights}: corrupt tensor data ({type(err).__name__}: {err})") from None
    return tensors, meta
