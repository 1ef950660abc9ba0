"""Data sets on synthetic files: ImageFolder cache, IDX parsing, subsets, transforms, errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import snncal.ann.data as data
from snncal.core.subsets import describe_subset, evenly_spaced, random_indices

CLASSES = [f"c{i}" for i in range(10)]


def _image_folder(root: Path, per_class: int = 2, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i:04d}.png")
    return root


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNNCAL_CACHE_DIR", str(tmp_path / "cache"))


def test_cifar_image_folder_is_decoded_once_and_cached(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "cifar")
    ds = data.build_dataset("cifar10", root, "train", augment="none")
    assert len(ds) == 20 and ds.classes == CLASSES
    x, y = ds[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert y == 1
    png = np.array(Image.open(root / "train" / "c1" / "0001.png"))
    torch.testing.assert_close(x, torch.from_numpy(png).permute(2, 0, 1).float() / 255)
    cached = list((tmp_path / "cache").glob("*.pt"))
    assert len(cached) == 1
    again = data.build_dataset("cifar10", root, "train", augment="none")
    assert torch.equal(again.images, ds.images)
    test = data.build_dataset("cifar10", root, "val")  # val is an alias of test
    assert len(test) == 20


def test_train_transforms_keep_shape_and_range(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "cifar")
    for augment in data.AUGMENTATIONS:
        ds = data.build_dataset("cifar10", root, "train", augment=augment)
        torch.manual_seed(0)
        x, _ = ds[0]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert float(x.min()) >= 0 and float(x.max()) <= 1
    with pytest.raises(ValueError, match="unknown augmentation 'heavy'"):
        data.build_transform("cifar10", "train", "heavy")


def test_test_transform_is_deterministic(tmp_path: Path) -> None:
    """The test split ignores the augmentation: the same image under two random states is the
    same tensor, where the training split's paper augmentation gives two different ones."""
    root = _image_folder(tmp_path / "cifar")
    draws = {}
    for split in ("test", "train"):
        ds = data.build_dataset("cifar10", root, split, augment="paper")
        torch.manual_seed(0)
        first = ds[5][0]
        torch.manual_seed(1)
        draws[split] = (first, ds[5][0])
    assert torch.equal(*draws["test"])
    assert not torch.equal(*draws["train"])


def test_cutout_zeroes_a_square() -> None:
    torch.manual_seed(0)
    out = data.Cutout(8)(torch.ones(3, 32, 32))
    zeros = int((out == 0).all(0).sum())
    assert 0 < zeros <= 64


def test_different_image_sizes_are_rejected(tmp_path: Path) -> None:
    for i, size in enumerate((8, 9)):
        (tmp_path / "f" / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(tmp_path / "f" / "a" / f"{i}.png")
    with pytest.raises(ValueError, match="differ in size"):
        data.load_image_folder(tmp_path / "f")


def test_missing_cifar_says_what_was_expected_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist.*expected.*unpack\.sh"):
        data.build_dataset("cifar10", tmp_path / "nowhere", "train")
    (tmp_path / "wrong" / "images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"holds \['images'\].*train/<class>"):
        data.build_dataset("cifar10", tmp_path / "wrong", "train")


def test_wrong_class_count(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "cifar")
    with pytest.raises(ValueError, match="10 class folders but cifar100 has 100"):
        data.build_dataset("cifar100", root, "train")


def test_unknown_dataset_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown data set 'mnist2'.*cifar10.*fashion_mnist"):
        data.build_dataset("mnist2", "/tmp")
    assert data.dataset_info("Fashion-MNIST").in_channels == 1


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_parser_round_trip(tmp_path: Path) -> None:
    arr = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    _write_idx(tmp_path / "x.gz", arr)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "x.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")
    with pytest.raises(ValueError, match="holds 3 bytes"):
        data.read_idx(tmp_path / "short")


def test_fashion_mnist_from_idx_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    train = data.build_dataset("fashion_mnist", tmp_path, "train", augment="paper")
    test = data.build_dataset("fashion_mnist", tmp_path, "test")
    assert len(train) == 6 and len(test) == 4
    x, y = test[3]
    assert x.shape == (1, 28, 28) and y == 3
    assert train[0][0].shape == (1, 28, 28)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        data.build_dataset("fashion_mnist", tmp_path / "empty", "train")


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_debian_fashion_mnist() -> None:
    test = data.build_dataset("fashion_mnist", split="test")
    assert len(test) == 10_000
    assert sorted(torch.bincount(test.targets).tolist()) == [1000] * 10


def test_subsets_are_seeded_or_evenly_spaced() -> None:
    a, b, c = random_indices(100, 10, seed=0), random_indices(100, 10, seed=0), random_indices(100, 10, 1)
    assert a == b != c and len(set(a)) == 10 and all(0 <= i < 100 for i in a)
    assert sorted(random_indices(100, 1000, seed=0)) == list(range(100))
    with pytest.raises(ValueError, match="at least one image"):
        random_indices(100, 0, seed=0)
    ds = data.TensorImageDataset(torch.zeros(100, 1, 2, 2, dtype=torch.uint8), torch.arange(100))
    assert evenly_spaced(ds, 20).indices == list(range(0, 100, 5)) and evenly_spaced(ds, None) is ds
    assert describe_subset(20, 100) == "20 of 100 test images (every 5th)"


def test_tensor_dataset_validates() -> None:
    with pytest.raises(ValueError, match="uint8"):
        data.TensorImageDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        data.TensorImageDataset(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3))


def test_imagenet_folder_transforms(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            (tmp_path / split / c).mkdir(parents=True)
            img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / split / c / "a.JPEG")
    train = data.build_dataset("imagenet", tmp_path, "train")
    val = data.build_dataset("imagenet", tmp_path, "test")
    assert train[0][0].shape == val[1][0].shape == (3, 224, 224)
    assert val[1][1] == 1
    with pytest.raises(FileNotFoundError, match=r"image-net\.org"):
        data.build_dataset("imagenet", tmp_path / "none", "train")
