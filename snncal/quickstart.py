"""The quickstart job (``snncal quickstart``, ``make demo``) and the small CNN it trains.

Train :class:`SmallCNN` for a few epochs, convert it with each calibration method at each T
(converted and calibrated *for* that T, as in the paper), evaluate every network on the same
fixed test subset (the first ``test_images`` test images), and write the table, the plots, an
exported SNN and one results file.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from .convert import ConvertConfig, convert, make_config
from .experiments import ensure_ann_accuracy, run_sweep
from .models import register_model
from .models.layers import scale_channels
from .report import LayerRate, firing_rates
from .results import ResultsFile, SweepRow, accuracy_table, write_csv

__all__ = ["QuickstartConfig", "QuickstartResult", "SmallCNN", "run_quickstart"]

log = logging.getLogger("snncal")


class SmallCNN(nn.Module):
    """Three stride-2 conv-BN-ReLU blocks and a linear classifier (about 20k parameters).

    Sized for CPUs: it trains in about 10 s per Fashion-MNIST epoch on one core, and every layer
    after the first (which direct encoding runs once) costs about 0.3 MMAC per image and time
    step. 28x28 and 32x32 inputs both end as 4x4 maps.
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: float = 1.0,
        in_channels: int = 3,
        channels: tuple[int, ...] = (16, 32, 32),
        image_size: int = 32,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev, size = in_channels, image_size
        for c in channels:
            c = scale_channels(c, width)
            layers += [nn.Conv2d(prev, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            prev, size = c, (size + 1) // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(prev * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model
def cnn_small(num_classes: int = 10, width: float = 1.0, **kw) -> SmallCNN:
    """The quickstart's CNN: 3 stride-2 convs (16/32/32 channels) + a linear layer."""
    return SmallCNN(num_classes, width, **kw)


@dataclass(frozen=True)
class QuickstartConfig:
    """Settings of the quickstart; the defaults are ``make demo``."""

    out: str = "runs/quickstart"
    data: str | None = None  # a CIFAR-10 ImageFolder copy; None: Fashion-MNIST (Debian package)
    epochs: int = 8
    augment: str | None = None  # default: "none" on Fashion-MNIST, "basic" on CIFAR-10
    methods: tuple[str, ...] = ("none", "light", "advanced")
    Ts: tuple[int, ...] = (16, 32, 64, 128, 256, 2048)
    test_images: int = 1000  # the SNNs are evaluated on the first N test images
    calib_images: int = 256
    rate_T: int = 32  # firing rates and the exported SNN: advanced calibration at this T
    rate_images: int = 256
    eval_batch_size: int = 100
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    progress: bool = True

    @property
    def dataset(self) -> str:
        return "cifar10" if self.data else "fashion_mnist"


@dataclass
class QuickstartResult:
    """What the quickstart measured and where it wrote it."""

    dataset: str
    ann_acc: float  # on the test subset
    ann_acc_full: float | None  # on the whole test set
    test_images: int
    rows: list[SweepRow]
    rates: list[LayerRate]
    table: str
    files: dict[str, str]
    seconds: dict[str, float]


def _train(cfg: QuickstartConfig, out: Path) -> dict[str, Any]:
    from .train import TrainConfig, train

    tc = TrainConfig(
        arch="cnn_small", dataset=cfg.dataset, data_dir=cfg.data, out_dir=str(out / "ann"),
        epochs=cfg.epochs, augment=cfg.augment or ("basic" if cfg.data else "none"),
        workers=cfg.workers, seed=cfg.seed, device=cfg.device, progress=cfg.progress,
    )
    return train(tc)


def _first(dataset, n: int) -> Subset:
    return Subset(dataset, range(min(n, len(dataset))))


def run_quickstart(cfg: QuickstartConfig) -> QuickstartResult:
    """Train, convert, calibrate, sweep T, evaluate; write results, tables and plots under ``cfg.out``.

    Every step resumes: training from its state file, the sweep from its results file.
    """
    from . import plots
    from .data import build_dataset
    from .export import save_snn
    from .io import load_checkpoint

    out = Path(cfg.out)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    summary = _train(cfg, out)
    seconds["train"] = time.perf_counter() - t0
    model, meta = load_checkpoint(out / "ann" / "last", device=cfg.device)
    calib = build_dataset(cfg.dataset, cfg.data, "train", augment="none")
    test_full = build_dataset(cfg.dataset, cfg.data, "test")
    test = _first(test_full, cfg.test_images)
    loader = DataLoader(test, batch_size=cfg.eval_batch_size, num_workers=cfg.workers)
    base = ConvertConfig(num_images=cfg.calib_images)
    results = ResultsFile(
        out / "results.json",
        config={"quickstart": dataclasses.asdict(cfg), "train": summary["config"], "convert": base.to_dict()},
        protocol={"dataset": cfg.dataset, "ann_epoch": meta.get("epoch"),
                  "ann_test_acc": meta.get("test_acc"), "test_images": len(test), "convert": base.to_dict()},
    )
    ann_acc = ensure_ann_accuracy(results, model, loader, cfg.device)
    results.set_ann(test_acc_full=summary["test_acc"], train_seconds=summary["train_seconds"],
                    arch=meta["arch"], epochs=meta.get("epoch"))
    t1 = time.perf_counter()
    rows = run_sweep(model, calib, loader, results, cfg.methods, cfg.Ts, [cfg.seed], base,
                     cfg.device, cfg.progress)
    seconds["sweep"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    rate_cfg = make_config(base, method="advanced", T=cfg.rate_T, seed=cfg.seed)
    snn = convert(model, calib, rate_cfg)
    snn_path = save_snn(out / f"snn_advanced_T{cfg.rate_T}", snn, meta, rate_cfg,
                        input_shape=list(test[0][0].shape), extra={"ann_checkpoint": str(out / "ann" / "last")})
    rates = firing_rates(snn, loader, max_images=cfg.rate_images)
    seconds["rates"] = time.perf_counter() - t2

    name = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}[cfg.dataset]
    title = f"cnn_small on {name}: SNN accuracy on the first {len(test)} test images"
    table = accuracy_table(rows, ann_acc, cfg.methods, cfg.Ts)
    files = {
        "results": str(results.path),
        "csv": str(write_csv(out / "results.csv", rows)),
        "table": str(_write_markdown(out / "results.md", title, table, cfg, len(test_full), summary)),
        "accuracy_plot": str(plots.plot_accuracy(rows, out / "accuracy_vs_T.png", ann_acc, title=title,
                                                 methods=cfg.methods)),
        "rates_plot": str(plots.plot_firing_rates(
            rates, out / "firing_rates.png",
            title=f"Firing rates of cnn_small (advanced, T={cfg.rate_T}), {name}")),
        "snn": str(snn_path),
        "ann": str(out / "ann" / "last.safetensors"),
    }
    seconds["total"] = time.perf_counter() - t0
    results.set_extra(rates=rates, files=files, seconds=seconds)
    return QuickstartResult(cfg.dataset, ann_acc, summary["test_acc"], len(test), rows, rates, table,
                            files, seconds)


def _write_markdown(path: Path, title: str, table: str, cfg: QuickstartConfig, total: int,
                    summary: dict[str, Any]) -> Path:
    from .io import atomic_write_text

    lines = [
        f"# {title}", "",
        f"Each SNN is converted and calibrated for its T ({cfg.calib_images} calibration images, seed "
        f"{cfg.seed}) and evaluated on test images 0-{cfg.test_images - 1} of {total}. The ANN column is "
        f"the ANN on the same images; on all {total} it scores {summary['test_acc']:.2f}% after "
        f"{summary['epochs']} epochs ({summary['train_seconds']:.0f} s).", "",
        table,
    ]
    return atomic_write_text(path, "\n".join(lines))

