"""Small image data sets held in memory as one uint8 tensor, decoded from disk once and cached."""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from snncal.core.files import atomic_write_bytes

__all__ = [
    "TensorImageDataset",
    "default_cache_dir",
    "load_image_folder",
]

log = logging.getLogger("snncal")


class TensorImageDataset(Dataset):
    """Images as a uint8 ``[N, C, H, W]`` tensor with int64 labels; ``transform`` sees one image.

    Indexing returns ``(transform(image), label)``; without a transform the image is converted to
    float in ``[0, 1]``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        classes: list[str] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} labels")
        self.images = images
        self.targets = targets.long()
        self.classes = classes if classes is not None else [str(i) for i in range(self.num_classes)]
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return int(self.targets.max()) + 1 if len(self.targets) else 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        img = self.transform(img) if self.transform is not None else img.float().div_(255)
        return img, int(self.targets[i])

    def with_transform(self, transform: Callable | None) -> TensorImageDataset:
        """The same tensors (shared, not copied) with another transform."""
        return TensorImageDataset(self.images, self.targets, self.classes, transform)


def default_cache_dir() -> Path:
    """``$SNNCAL_CACHE_DIR``, else ``~/.cache/snncal``."""
    return Path(os.environ.get("SNNCAL_CACHE_DIR", Path.home() / ".cache" / "snncal"))


def _fingerprint(root: Path, samples: list[tuple[str, int]]) -> str:
    h = hashlib.sha1(str(root.resolve()).encode())
    for path, label in samples:
        st = os.stat(path)
        h.update(f"{os.path.relpath(path, root)}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _decode(path: str, mode: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert(mode))


def _read_cache(path: Path) -> TensorImageDataset | None:
    """A decoded-images cache, read weights-only (a file there cannot run code); a damaged or
    foreign one is ignored with a warning, and rewritten."""
    try:
        blob = torch.load(path, weights_only=True)
        return TensorImageDataset(blob["images"], blob["targets"])
    except Exception as err:  # unpickling refused, truncated, not a dict, wrong tensors
        log.warning("ignoring the image cache %s (%s: %s); decoding the images again", path,
                    type(err).__name__, str(err).splitlines()[0][:120])
        return None


def load_image_folder(
    root: str | Path,
    mode: str = "RGB",
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> TensorImageDataset:
    """Read ``root/<class>/<image>`` (ImageFolder order) into a :class:`TensorImageDataset`.

    All images must have the same size. The decoded tensor is cached under ``cache_dir`` keyed by
    the files' names, sizes and modification times, so later runs skip JPEG decoding.
    """
    root = Path(root)
    classes, class_to_idx = find_classes(str(root))
    samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    if not samples:
        raise FileNotFoundError(f"no images found under {root}/<class>/")
    key = f"{root.name}-{mode}-{len(samples)}-{_fingerprint(root, samples)}.pt"
    cache_path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_path = cache_path / key
    if cache and cache_path.exists():
        cached = _read_cache(cache_path)
        if cached is not None:
            log.info("loaded %d cached images from %s", len(cached.targets), cache_path)
            return TensorImageDataset(cached.images, cached.targets, classes)
    log.info("decoding %d images under %s (once; cached afterwards)", len(samples), root)
    arrays = [_decode(p, mode) for p, _ in samples]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"images under {root} differ in size ({sorted(shapes)[:3]} ...)")
    images = torch.from_numpy(np.stack(arrays))
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
    images = images.contiguous()
    targets = torch.tensor([t for _, t in samples], dtype=torch.int64)
    if cache:
        buf = io.BytesIO()
        torch.save({"images": images, "targets": targets, "classes": classes}, buf)
        atomic_write_bytes(cache_path, buf.getvalue())
    return TensorImageDataset(images, targets, classes)
