"""The paper's ANN training recipe as plain functions (torchvision-references style).

``train(TrainConfig(...))`` trains a zoo model and writes, under ``out_dir``:

* ``state.pt``: everything needed to resume (weights, optimizer, scheduler, EMA, history) as
  tensors and plain data, read back weights-only; rewritten atomically after every epoch, so
  ``kill -9`` loses at most the running epoch (each epoch reseeds every random source from the
  seed and its number, so a resumed run draws what an uninterrupted one would);
* ``last.{safetensors,json}`` and ``best.{safetensors,json}``: checkpoints (see
  :mod:`snncal.ann.checkpoint`), holding the EMA weights when EMA is on;
* ``history.json``: per-epoch metrics.

The recipe's settings and defaults (Li et al. 2021) are :class:`~snncal.ann.recipe.TrainConfig`,
re-exported here. Mixed precision (bf16 autocast) on GPU; DDP under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset
from tqdm import tqdm

from snncal.ann.checkpoint import save_checkpoint
from snncal.ann.recipe import TrainConfig
from snncal.ann.resume import check_resumable, load_state, save_state
from snncal.core import distributed
from snncal.core.evaluate import evaluate
from snncal.core.files import atomic_write_json
from snncal.core.subsets import evenly_spaced, random_indices

__all__ = [
    "Progress",
    "TrainConfig",
    "TrainRun",
    "build_model",
    "has_batchnorm",
    "train",
    "train_one_epoch",
]

log = logging.getLogger("snncal")


# ----------------------------------------------------------------------------- steps


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    criterion: nn.Module,
    device: torch.device,
    *,
    ema: torch.optim.swa_utils.AveragedModel | None = None,
    amp: bool = False,
    progress: bool = False,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over ``loader``; the scheduler steps every batch. Returns mean loss and top-1 %."""
    model.train()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in tqdm(loader, desc=desc, disable=not progress, leave=False):
        x, y = _to(x, device), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
            loss = criterion(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        total_loss += loss.detach() * len(y)
        correct += (out.argmax(1) == y).sum()
        seen += len(y)
    if not math.isfinite(float(total_loss)):
        raise FloatingPointError("training loss is not finite; lower the learning rate")
    return {"loss": float(total_loss) / max(seen, 1), "acc": 100.0 * float(correct) / max(seen, 1)}


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """An input batch on ``device``, images channels-last like the model's convolutions."""
    layout = torch.channels_last if x.dim() == 4 else torch.preserve_format
    return x.to(device, non_blocking=True, memory_format=layout)


# ----------------------------------------------------------------------------- setup


def _setup_distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); starts the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    distributed.start()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return dist.get_rank(), world, local


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device != "auto":
        return torch.device(cfg.device)
    return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _train_subset(ds: Dataset, n: int | None, seed: int) -> Dataset:
    if n is None or n >= len(ds):  # type: ignore[arg-type]
        return ds
    return Subset(ds, random_indices(len(ds), n, seed))  # type: ignore[arg-type]


def _datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset]:
    from snncal.ann.data import build_dataset

    train_set = build_dataset(
        cfg.dataset, cfg.data_dir, "train", augment=cfg.augment, download=cfg.download
    )
    test_set = build_dataset(cfg.dataset, cfg.data_dir, "test", download=cfg.download)
    return train_set, test_set


def build_model(cfg: TrainConfig) -> tuple[nn.Module, dict[str, Any]]:
    """The zoo model of ``cfg`` with the data set's ``Normalize`` first, and its checkpoint meta."""
    import snncal.ann.models as zoo
    from snncal.ann.data import dataset_info

    info = dataset_info(cfg.dataset)
    kwargs = {"in_channels": info.in_channels} if info.in_channels != 3 else {}
    model = zoo.create(
        cfg.arch, info.num_classes, cfg.width, mean=info.mean, std=info.std, **kwargs
    )
    meta = {
        "arch": cfg.arch,
        "num_classes": info.num_classes,
        "width": cfg.width,
        "model_kwargs": kwargs,
        "dataset": info.name,
        "normalize": {"mean": list(info.mean), "std": list(info.std)},
        "input_size": [info.in_channels, info.image_size, info.image_size],
    }
    return model, meta


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has a BatchNorm layer (the paper's recipe trains such models differently)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _loader(ds: Dataset, batch: int, shuffle: bool, workers: int, sampler=None) -> DataLoader:
    return DataLoader(
        ds,
        batch_size=batch,
        shuffle=False,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=shuffle,
        persistent_workers=workers > 0,
    )


# ----------------------------------------------------------------------------- driver


@dataclass
class Progress:
    """How far a run has come: epochs done, their history, the best test accuracy (-1: none yet)
    and the seconds spent training, over every call that resumed it."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float = -1.0
    elapsed: float = 0.0


@dataclass
class TrainRun:
    """One training run's state: its settings and folder, the model, its optimizer, schedule and
    EMA (``None`` when off), and its :class:`Progress`."""

    cfg: TrainConfig
    out: Path
    model: nn.Module
    optimizer: Any
    scheduler: Any
    ema: Any
    progress: Progress = field(default_factory=Progress)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and saved: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def resume(self) -> None:
        """Load ``out/state.pt`` into the run when present (and ``cfg.resume``)."""
        state = load_state(self.out / "state.pt") if self.cfg.resume else None
        if state is None:
            return
        check_resumable(state["config"], self.cfg)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.progress = Progress(state["epoch"], state["history"], state["best"], state.get("elapsed", 0.0))
        log.info("resuming %s from epoch %d/%d", self.out, self.progress.epoch, self.cfg.epochs)

    def save_epoch(self, meta: dict, te: dict) -> None:
        """Write last/best checkpoints, history.json and the resume state, each atomically."""
        cfg, progress, out = self.cfg, self.progress, self.out
        ck_meta = {
            **meta,
            "epoch": progress.epoch,
            "test_acc": te["acc"],
            "test_acc5": te["acc5"],
            "weights": "ema" if self.ema is not None else "model",
            "train_seconds": progress.elapsed,
            "recipe": dataclasses.asdict(cfg),
        }
        save_checkpoint(out / "last", self.eval_model, ck_meta)
        if te["acc"] > progress.best:
            progress.best = te["acc"]
            save_checkpoint(out / "best", self.eval_model, ck_meta)
        atomic_write_json(out / "history.json", progress.history)
        save_state(
            out / "state.pt",
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            ema=self.ema.state_dict() if self.ema is not None else None,
            config=dataclasses.asdict(cfg),
            **dataclasses.asdict(progress),
        )




def train(
    config: TrainConfig,
    train_set: Dataset | None = None,
    test_set: Dataset | None = None,
) -> dict[str, Any]:
    """Train ``config.arch`` on ``config.dataset`` (or the given data sets), resuming if possible.

    Returns a summary: final/best test accuracy, epochs run, wall time, checkpoint paths, history.
    """
    with _torch_settings(config):
        return _train(config, train_set, test_set)


@contextlib.contextmanager
def _torch_settings(cfg: TrainConfig) -> Iterator[None]:
    """Apply ``threads`` / ``deterministic`` for the run and restore the global flags after it."""
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.backends.cudnn.benchmark = not cfg.deterministic
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark = saved[3]


def _train(config: TrainConfig, train_set: Dataset | None, test_set: Dataset | None) -> dict:
    rank, world, local = _setup_distributed()
    device = _device(config, local)
    _seed_everything(config.seed)
    model, meta = build_model(config)
    cfg = config.resolve(has_batchnorm(model))
    out = Path(cfg.out_dir)
    train_loader, test_loader, sampler = _loaders(cfg, train_set, test_set, rank, world)
    model.to(device, memory_format=torch.channels_last)  # convs train ~1.35x faster on CPU
    run = TrainRun(cfg, out, model, *_optimizer(model, cfg, len(train_loader)))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    amp = cfg.amp and device.type == "cuda"
    run.resume()
    progress = run.progress
    net: nn.Module = model
    if world > 1:
        ids = [local] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    log.info(
        "training %s on %s: %d images, %d epochs x %d steps, lr %g, wd %g, device %s x%d",
        cfg.arch, cfg.dataset, len(train_loader.dataset), cfg.epochs, len(train_loader), cfg.lr,
        cfg.weight_decay, device, world,
    )  # fmt: skip
    for epoch in range(progress.epoch, cfg.epochs):
        t0 = time.perf_counter()
        _seed_everything(cfg.seed * 100_003 + epoch)  # augmentation / dropout of this epoch
        if world > 1:
            sampler.set_epoch(epoch)
        else:
            sampler.generator.manual_seed(cfg.seed * 100_003 + epoch)
        tr = train_one_epoch(
            net, train_loader, run.optimizer, run.scheduler, criterion, device, ema=run.ema, amp=amp,
            progress=cfg.progress and rank == 0, desc=f"epoch {epoch + 1}/{cfg.epochs}",
        )  # fmt: skip
        if rank != 0:
            continue
        result = evaluate(run.eval_model, test_loader, device=device, amp=amp)
        te = {"loss": result.ann_loss, "acc": result.ann, "acc5": result.ann_top5}
        dt = time.perf_counter() - t0
        progress.elapsed += dt
        progress.epoch = epoch + 1
        progress.history.append(
            {
                "epoch": epoch + 1,
                **{f"train_{k}": v for k, v in tr.items()},
                **{f"test_{k}": v for k, v in te.items()},
                "lr": run.optimizer.param_groups[0]["lr"],
                "seconds": dt,
            }
        )
        log.info(
            "epoch %d/%d  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  (%.0f s)",
            epoch + 1, cfg.epochs, tr["loss"], tr["acc"], te["loss"], te["acc"], dt,
        )  # fmt: skip
        run.save_epoch(meta, te)
    if world > 1:
        dist.barrier()
    history = progress.history
    return {
        "arch": cfg.arch,
        "dataset": cfg.dataset,
        "epochs": cfg.epochs,
        "test_acc": history[-1]["test_acc"] if history else None,
        "best_test_acc": progress.best if progress.best >= 0 else None,
        "train_seconds": progress.elapsed,
        "checkpoint": str(out / "last.safetensors"),
        "best_checkpoint": str(out / "best.safetensors"),
        "history": history,
        "config": dataclasses.asdict(cfg),
    }


def _loaders(
    cfg: TrainConfig, train_set: Dataset | None, test_set: Dataset | None, rank: int, world: int
) -> tuple[DataLoader, DataLoader, Any]:
    """Train / test loaders (the given data sets, else ``cfg.dataset``) and the train sampler."""
    if train_set is None or test_set is None:
        loaded = _datasets(cfg)
        train_set = train_set if train_set is not None else loaded[0]
        test_set = test_set if test_set is not None else loaded[1]
    train_set = _train_subset(train_set, cfg.train_images, cfg.seed)
    test_set = evenly_spaced(test_set, cfg.test_images)
    if world > 1:
        sampler: Any = DistributedSampler(train_set, world, rank, shuffle=True, seed=cfg.seed)
    else:
        sampler = RandomSampler(train_set, generator=torch.Generator())
    per_proc = max(1, cfg.batch_size // world)
    train_loader = _loader(train_set, per_proc, True, cfg.workers, sampler)
    if len(train_loader) == 0:
        raise ValueError(f"{len(train_set)} training images is less than one batch of {per_proc}")
    return train_loader, _loader(test_set, per_proc, False, cfg.workers), sampler


def _optimizer(model: nn.Module, cfg: TrainConfig, steps: int) -> tuple:
    """SGD, per-step cosine schedule over the whole run (after a linear warm-up of
    ``warmup_epochs``), and the EMA model (None when off)."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    warm = min(cfg.warmup_epochs, cfg.epochs - 1) * steps
    lr = torch.optim.lr_scheduler
    scheduler = lr.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps - warm)
    if warm:
        ramp = lr.LinearLR(optimizer, start_factor=0.01, total_iters=warm)
        scheduler = lr.SequentialLR(optimizer, [ramp, scheduler], milestones=[warm])
    ema = None
    if cfg.ema_decay:
        ema = torch.optim.swa_utils.AveragedModel(
            model,
            multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay),
            use_buffers=True,
        )
    return optimizer, scheduler, ema


# ----------------------------------------------------------------------------- entry point
