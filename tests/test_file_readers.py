"""Readers that never crash (issue #12): damaged or wrong files give one clear error.

Every reader of snncal, fed a truncated, bit-flipped or random file, or a file whose metadata is
valid JSON but wrong, raises :class:`FileFormatError` (a ValueError) whose message names the file,
or FileNotFoundError for a missing file: never a KeyError, TypeError or a traceback from
safetensors, json, numpy or gzip. Safetensors files carry a digest, so for them every damage is
caught; an IDX file has none, so a flipped data bit may read as other pixel values.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nets import Mixed, randomize_bn

import snncal
import snncal.ann.models as zoo
from snncal.ann.checkpoint import load_checkpoint, save_checkpoint
from snncal.ann.data import read_idx
from snncal.core import files
from snncal.core.files import FileFormatError

FEW = settings(max_examples=50, deadline=None)

SAFETENSORS_READERS: dict[str, Callable[[Path], Any]] = {
    "read_tensors": files.read_tensors,
    "read_meta": files.read_meta,
    "load": snncal.load,
    "read_snn_meta": snncal.core.export.read_meta,
    "load_checkpoint": load_checkpoint,
}
# which good file each reader is fed
SOURCE = {"read_tensors": "snn", "read_meta": "ann", "load": "snn", "read_snn_meta": "snn",
          "load_checkpoint": "ann"}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """One good file of each kind: an SNN (the Mixed net), an ANN checkpoint, IDX plain and gzip."""
    root = tmp_path_factory.mktemp("good")
    torch.manual_seed(0)
    x = torch.rand(8, 3, 16, 16)
    snn = snncal.convert(randomize_bn(Mixed(4)), x, T=2, method="light", num_images=8)
    ann = zoo.create("cnn_small", 3, 0.25, mean=[0.5] * 3, std=[0.25] * 3)
    norm = {"mean": [0.5] * 3, "std": [0.25] * 3}
    images = np.arange(2 * 5 * 4, dtype=np.uint8).reshape(2, 5, 4)
    idx = bytes([0, 0, 8, 3]) + struct.pack(">3I", *images.shape) + images.tobytes()
    (root / "images.idx").write_bytes(idx)
    (root / "images.idx.gz").write_bytes(gzip.compress(idx))
    return {
        "snn": snncal.save(snn, root / "snn", meta={"input_shape": [3, 16, 16]}),
        "ann": save_checkpoint(root / "ann", ann, {"arch": "cnn_small", "num_classes": 3, "width": 0.25,
                                                  "normalize": norm}),
        "idx": root / "images.idx",
        "idx.gz": root / "images.idx.gz",
    }


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cases")


def _fails_clearly(read: Callable[[Path], Any], path: Path) -> None:
    with pytest.raises(FileFormatError) as err:
        read(path)
    assert str(path) in str(err.value)


def _reads_or_fails_clearly(read: Callable[[Path], Any], path: Path) -> None:
    try:
        read(path)
    except FileFormatError as err:
        assert str(path) in str(err)


def _flip(data: bytes, bits: list[int]) -> bytes:
    out = bytearray(data)
    for bit in bits:
        out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def _write(case_dir: Path, name: str, data: bytes) -> Path:
    path = case_dir / name
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- safetensors files
@pytest.mark.parametrize("reader", list(SAFETENSORS_READERS))
@FEW
@given(cut=st.integers(min_value=0))
def test_truncated_files_fail_clearly(good, case_dir, reader, cut) -> None:
    data = good[SOURCE[reader]].read_bytes()
    path = _write(case_dir, "cut.safetensors", data[: cut % len(data)])
    _fails_clearly(SAFETENSORS_READERS[reader], path)


@pytest.mark.parametrize("reader", list(SAFETENSORS_READERS))
@FEW
@given(bits=st.lists(st.integers(min_value=0), min_size=1, max_size=3, unique=True))
def test_bit_flips_fail_clearly(good, case_dir, reader, bits) -> None:
    data = good[SOURCE[reader]].read_bytes()
    bits = sorted({b % (8 * len(data)) for b in bits})
    path = _write(case_dir, "flipped.safetensors", _flip(data, bits))
    _fails_clearly(SAFETENSORS_READERS[reader], path)


def test_a_flip_in_each_region_fails_clearly(good, case_dir) -> None:
    """The length prefix, the JSON header and the tensor bytes: the digest catches each."""
    data = good["snn"].read_bytes()
    size = int.from_bytes(data[:8], "little")
    for byte in (0, 8, 8 + size // 2, 8 + size + 1, len(data) - 1):
        path = _write(case_dir, "region.safetensors", _flip(data, [8 * byte]))
        _fails_clearly(snncal.load, path)


_HEADERS = st.text(max_size=60).map(lambda s: struct.pack("<Q", len(s.encode())) + s.encode())


@pytest.mark.parametrize("reader", list(SAFETENSORS_READERS))
@FEW
@given(data=st.binary(max_size=200) | _HEADERS | st.builds(
    lambda tail: b'{"__metadata__":' + tail, st.binary(max_size=40)).map(
    lambda body: struct.pack("<Q", len(body)) + body))
def test_random_files_fail_clearly(case_dir, reader, data) -> None:
    path = _write(case_dir, "random.safetensors", data)
    _fails_clearly(SAFETENSORS_READERS[reader], path)


def test_missing_files_are_file_not_found(tmp_path) -> None:
    for read in (*SAFETENSORS_READERS.values(), read_idx):
        with pytest.raises(FileNotFoundError, match="missing"):
            read(tmp_path / "missing")


# ----------------------------------------------------------------------------- valid JSON, wrong meta
def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a JSON value."""
    if isinstance(value, dict):
        children = list(value.items())
    else:
        children = list(enumerate(value)) if isinstance(value, list) else []
    found = [prefix] if prefix else []
    for key, child in children:
        found += _paths(child, (*prefix, key))
    return found


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _mutated(good: Path, case_dir: Path, data: st.DataObject) -> Path:
    """The good file with one value of its metadata replaced (or deleted), and a valid digest."""
    tensors, meta = files.read_tensors(good)
    where = data.draw(st.sampled_from(_paths(meta)), label="path")
    owner = meta
    for key in where[:-1]:
        owner = owner[key]
    if data.draw(st.booleans(), label="delete") and isinstance(owner, dict):
        del owner[where[-1]]
    else:
        owner[where[-1]] = data.draw(_JSON, label="value")
    return files.write_tensors(case_dir / "mutated", tensors, meta)


@FEW
@given(data=st.data())
def test_wrong_snn_metadata_loads_or_fails_clearly(good, case_dir, data) -> None:
    _reads_or_fails_clearly(snncal.load, _mutated(good["snn"], case_dir, data))


@FEW
@given(data=st.data())
def test_wrong_ann_metadata_loads_or_fails_clearly(good, case_dir, data) -> None:
    _reads_or_fails_clearly(load_checkpoint, _mutated(good["ann"], case_dir, data))


def _set(*path_and_value: Any) -> Callable[[dict], None]:
    *path, key, value = path_and_value

    def edit(meta: dict) -> None:
        for k in path:
            meta = meta[k]
        meta[key] = value

    return edit


def _drop(key: str) -> Callable[[dict], None]:
    return lambda meta: meta.pop(key)


def _first_conv_reads_ghost(meta: dict) -> None:
    node = next(n for n in meta["graph"]["nodes"] if n["op"] == "call_module")
    node["args"] = [{"node": "ghost"}]


@pytest.mark.parametrize(
    ("source", "edit", "message"),
    [
        ("ann", _drop("arch"), "arch None"),
        ("ann", _set("arch", 7), "arch 7"),
        ("ann", _set("arch", "no_such_net"), "unknown model 'no_such_net'"),
        ("ann", _set("num_classes", 0), "num_classes = 0"),
        ("ann", _set("num_classes", 2.5), "num_classes = 2.5"),
        ("ann", _set("width", -1), "width = -1"),
        ("ann", _set("model_kwargs", [1]), "model_kwargs = \\[1\\]"),
        ("ann", _set("model_kwargs", {"depth": 3}), "cannot build the model"),
        ("ann", _set("normalize", {"mean": "x"}), "normalize = "),
        ("ann", _set("num_classes", 4), "does not match arch 'cnn_small'"),
        ("snn", _set("snn", "T", 0), "T = 0, not a positive integer"),
        ("snn", _set("snn", "T", -4), "T = -4, not a positive integer"),
        ("snn", _set("snn", "T", 2.0), "T = 2.0, not a positive integer"),
        ("snn", _set("snn", "T", True), "T = True, not a positive integer"),
        ("snn", _set("snn", "T", "8"), "T = '8', not a positive integer"),
        ("snn", _drop("snn"), "the SNN settings are None"),
        ("snn", _set("graph", "modules", "c1", "type", "GRU"), "module 'c1' has unknown type 'GRU'"),
        ("snn", _set("graph", "modules", "c1", "config", "kernel_size", -3), "cannot build a Conv2d"),
        ("snn", _first_conv_reads_ghost, "refers to node 'ghost', which is not defined before it"),
        ("snn", _set("graph", "nodes", {}), "the graph's 'nodes' is {}, not a list"),
        ("snn", _set("graph", "nodes", []), "no output node"),
        ("snn", _drop("graph"), "the graph is None"),
    ],
)
def test_wrong_metadata_gives_one_clear_error(good, tmp_path, source, edit, message) -> None:
    tensors, meta = files.read_tensors(good[source])
    edit(meta)
    path = files.write_tensors(tmp_path / "wrong", tensors, meta)
    read = snncal.load if source == "snn" else load_checkpoint
    with pytest.raises(FileFormatError, match=message) as err:
        read(path)
    assert str(path) in str(err.value)


# ----------------------------------------------------------------------------- IDX files
@pytest.mark.parametrize("kind", ["idx", "idx.gz"])
@FEW
@given(cut=st.integers(min_value=0))
def test_truncated_idx_fails_clearly(good, case_dir, kind, cut) -> None:
    data = good[kind].read_bytes()
    _fails_clearly(read_idx, _write(case_dir, f"cut.{kind}", data[: cut % len(data)]))


@pytest.mark.parametrize("kind", ["idx", "idx.gz"])
@FEW
@given(bits=st.lists(st.integers(min_value=0), min_size=1, max_size=3, unique=True))
def test_flipped_idx_reads_or_fails_clearly(good, case_dir, kind, bits) -> None:
    data = good[kind].read_bytes()
    _reads_or_fails_clearly(read_idx, _write(case_dir, f"flipped.{kind}", _flip(data, bits)))


@pytest.mark.parametrize("kind", ["idx", "idx.gz"])
@FEW
@given(data=st.binary(max_size=64) | st.builds(
    lambda dtype, ndim, tail: bytes([0, 0, dtype, ndim]) + tail,
    st.sampled_from([8, 9, 11, 12, 13, 14]), st.integers(0, 255), st.binary(max_size=64)))
def test_random_idx_reads_or_fails_clearly(case_dir, kind, data) -> None:
    if kind == "idx.gz" and data[:1] != b"\x1f":
        data = gzip.compress(data)  # a valid gzip stream of random IDX bytes, or raw junk
    _reads_or_fails_clearly(read_idx, _write(case_dir, f"random.{kind}", data))


def test_idx_errors_name_the_problem(tmp_path) -> None:
    path = _write(tmp_path, "short.idx", bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(FileFormatError, match="truncated IDX header"):
        read_idx(path)
    path = _write(tmp_path, "bad.idx.gz", b"\x1f\x8b not gzip")
    with pytest.raises(FileFormatError, match=r"bad\.idx\.gz: corrupt gzip stream"):
        read_idx(path)
