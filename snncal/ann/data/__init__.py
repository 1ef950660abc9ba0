"""Data sets and the paper's transforms."""

from snncal.ann.data.datasets import (
    DATASETS,
    DatasetInfo,
    build_dataset,
    dataset_info,
)
from snncal.ann.data.idx import read_idx
from snncal.ann.data.tensor import TensorImageDataset, default_cache_dir, load_image_folder
from snncal.ann.data.transforms import AUGMENTATIONS, Cutout, build_transform

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "Cutout",
    "DatasetInfo",
    "TensorImageDataset",
    "build_dataset",
    "build_transform",
    "dataset_info",
    "default_cache_dir",
    "load_image_folder",
    "read_idx",
]
