"""Data sets by name: CIFAR-10/100, ImageNet (ImageFolder), Fashion-MNIST (Debian IDX files)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from snncal.ann.data.idx import read_idx
from snncal.ann.data.tensor import TensorImageDataset, load_image_folder
from snncal.ann.data.transforms import build_transform

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "build_dataset",
    "dataset_info",
]

log = logging.getLogger("snncal")

UNPACK_HINT = (
    "the CIFAR-10 JPEG copy is unpacked with `bash ../shared/datasets/unpack.sh DEST` "
    "(run from the repository root), then use DEST/cifar10"
)


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of a data set that travels with a checkpoint."""

    name: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_channels: int
    image_size: int
    default_root: str | None = None


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        "cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 3, 32
    ),
    "cifar100": DatasetInfo(
        "cifar100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 3, 32
    ),
    "imagenet": DatasetInfo("imagenet", 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 3, 224),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", 10, (0.2860,), (0.3530,), 1, 28, "/usr/share/datasets/fashion-mnist"
    ),
}

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def dataset_info(name: str) -> DatasetInfo:
    """Metadata of a known data set; a ValueError lists the known names."""
    key = name.lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}")
    return DATASETS[key]


def build_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "train",
    augment: str = "paper",
    download: bool = False,
    cache: bool = True,
) -> Dataset:
    """A data set split with the paper's transforms; images come out as float ``[0, 1]``.

    Args:
        name: "cifar10", "cifar100", "imagenet" or "fashion_mnist".
        root: CIFAR: an ImageFolder copy ``root/{train,test}/<class>/*.jpg`` or torchvision's
            ``root/cifar-10-batches-py``; ImageNet: ``root/{train,val}/<wnid>/*.JPEG``;
            Fashion-MNIST: the folder with the four IDX ``.gz`` files (default: Debian's).
        split: "train" or "test" ("val" is accepted as "test").
        augment: "paper", "basic" (crop + flip) or "none"; test splits are never augmented.
        download: let torchvision download CIFAR when it is missing (needs a network).
        cache: keep decoded CIFAR/ImageFolder images as a uint8 tensor cached on disk.
    """
    info = dataset_info(name)
    split = {"val": "test"}.get(split, split)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = root if root is not None else info.default_root
    if root is None:
        raise ValueError(f"data set {info.name!r} needs a root folder (data_dir)")
    transform = build_transform(info.name, split, augment)
    if info.name in ("cifar10", "cifar100"):
        ds = _cifar(info, Path(root), split, download, cache)
    elif info.name == "fashion_mnist":
        ds = _fashion_mnist(Path(root), split)
    else:
        return _imagenet(Path(root), split, transform)
    return ds.with_transform(transform)


def _layout_error(root: Path, expected: str, hint: str) -> FileNotFoundError:
    if root.is_dir():
        found = sorted(p.name for p in root.iterdir())[:10]
        what = f"{root} holds {found or 'nothing'}"
    else:
        what = f"{root} does not exist"
    return FileNotFoundError(f"{what}; expected {expected}. To get it: {hint}")


def _cifar(
    info: DatasetInfo, root: Path, split: str, download: bool, cache: bool
) -> TensorImageDataset:
    folder = root / split
    if folder.is_dir():
        ds = load_image_folder(folder, "RGB", cache=cache)
        if len(ds.classes) != info.num_classes:
            raise ValueError(
                f"{folder} has {len(ds.classes)} class folders but {info.name} has "
                f"{info.num_classes}"
            )
        return ds
    import torchvision.datasets as tvd

    cls = tvd.CIFAR10 if info.name == "cifar10" else tvd.CIFAR100
    batches = root / cls.base_folder
    if batches.is_dir() or download:
        try:  # torchvision checks each batch file's MD5 before it unpickles it
            tv = cls(str(root), train=split == "train", download=download)
        except RuntimeError as err:
            raise ValueError(f"{batches}: {err}") from None
        images = torch.from_numpy(np.ascontiguousarray(tv.data)).permute(0, 3, 1, 2).contiguous()
        return TensorImageDataset(images, torch.tensor(tv.targets), list(tv.classes))
    expected = f"{root}/{split}/<class>/*.jpg (ImageFolder) or {batches} (torchvision format)"
    hint = f"{UNPACK_HINT}; or pass download=True (--download) on a machine with a network"
    raise _layout_error(root, expected, hint)


def _idx_file(root: Path, stem: str) -> Path:
    """``root/stem.gz`` or, when only that exists, the uncompressed ``root/stem``."""
    plain = root / stem
    return plain if plain.exists() and not (root / f"{stem}.gz").exists() else root / f"{stem}.gz"


def _fashion_mnist(root: Path, split: str) -> TensorImageDataset:
    prefix = "train" if split == "train" else "t10k"
    img_path = _idx_file(root, f"{prefix}-images-idx3-ubyte")
    lbl_path = _idx_file(root, f"{prefix}-labels-idx1-ubyte")
    if not (img_path.exists() and lbl_path.exists()):
        raise _layout_error(
            root,
            f"{img_path.name} and {lbl_path.name} in {root}",
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu) puts them in "
            "/usr/share/datasets/fashion-mnist",
        )
    images = torch.from_numpy(read_idx(img_path).copy()).unsqueeze(1)
    labels = torch.from_numpy(read_idx(lbl_path).astype(np.int64))
    return TensorImageDataset(images, labels, list(FASHION_MNIST_CLASSES))


def _imagenet(root: Path, split: str, transform) -> Dataset:
    import torchvision.datasets as tvd

    folder = root / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise _layout_error(
            root,
            f"{folder}/<wnid>/*.JPEG (ImageFolder with train/ and val/)",
            "download ILSVRC2012 from image-net.org and sort val/ into class folders",
        )
    return tvd.ImageFolder(str(folder), transform=transform)
