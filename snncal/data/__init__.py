"""Data sets, the paper's transforms and seeded calibration subsets."""

from .datasets import (
    DATASETS,
    DatasetInfo,
    build_dataset,
    calibration_subset,
    dataset_info,
)
from .idx import read_idx
from .tensor import TensorImageDataset, default_cache_dir, load_image_folder
from .transforms import AUGMENTATIONS, Cutout, build_transform

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "Cutout",
    "DatasetInfo",
    "TensorImageDataset",
    "build_dataset",
    "build_transform",
    "calibration_subset",
    "dataset_info",
    "default_cache_dir",
    "load_image_folder",
    "read_idx",
]
