"""The quickstart job (``snncal quickstart``, ``make demo``).

Train the zoo's ``cnn_small`` for a few epochs, convert it with each calibration method at each T
(converted and calibrated *for* that T, as in the paper), evaluate every network on the same
fixed, named test subset (``test_images`` images evenly spaced through the test set, e.g. every
10th), and write the table, the plots, an
exported SNN and one results file.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from snncal.app.experiment import ensure_ann_accuracy, run_sweep, subset_name, test_subset
from snncal.app.results import ResultsFile, SweepRow, accuracy_table, write_csv
from snncal.core.config import ConvertConfig, make_config
from snncal.core.convert import convert
from snncal.core.evaluate import LayerRate, firing_rates

__all__ = ["QuickstartConfig", "QuickstartResult", "run_quickstart"]

log = logging.getLogger("snncal")


@dataclass(frozen=True)
class QuickstartConfig:
    """Settings of the quickstart; the defaults are ``make demo``."""

    out: str = "runs/quickstart"
    data: str | None = None  # a CIFAR-10 ImageFolder copy; None: Fashion-MNIST (Debian package)
    epochs: int = 8
    batch_size: int = 128
    augment: str | None = None  # default: "none" on Fashion-MNIST, "basic" on CIFAR-10
    methods: tuple[str, ...] = ("none", "light", "advanced")
    Ts: tuple[int, ...] = (16, 32, 64, 128, 256, 2048)
    test_images: int = 1000  # the SNNs are evaluated on N test images evenly spaced through the set
    calib_images: int = 256
    rate_T: int = 32  # noqa: N815  firing rates and the exported SNN: advanced calibration at this T
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
    train_seconds: float  # of the training run (which may have finished in an earlier call)
    test_images: int
    subset: str  # which test images, in words
    rows: list[SweepRow]
    rates: list[LayerRate]
    table: str
    files: dict[str, str]
    seconds: dict[str, float]


def _train(cfg: QuickstartConfig, out: Path) -> dict[str, Any]:
    from snncal.ann.train import TrainConfig, train

    tc = TrainConfig(
        arch="cnn_small", dataset=cfg.dataset, data_dir=cfg.data, out_dir=str(out / "ann"),
        epochs=cfg.epochs, batch_size=cfg.batch_size,
        augment=cfg.augment or ("basic" if cfg.data else "none"), workers=cfg.workers,
        seed=cfg.seed, device=cfg.device, progress=cfg.progress,
    )
    return train(tc)


def run_quickstart(
    cfg: QuickstartConfig, say: Callable[[str], None] | None = None
) -> QuickstartResult:
    """Train, convert, calibrate, sweep T, evaluate; write results, tables and plots under ``cfg.out``.

    Every step resumes: training from its state file, the sweep from its results file. ``say``
    receives one line at the end of each step (the CLI prints it).
    """
    say = say or log.info
    from snncal.ann.checkpoint import load_checkpoint
    from snncal.ann.data import build_dataset
    from snncal.app import plots
    from snncal.core.export import save

    out = Path(cfg.out)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    summary = _train(cfg, out)
    seconds["train"] = time.perf_counter() - t0
    say(f"trained {summary['epochs']} epochs in {summary['train_seconds']:.0f} s: test accuracy "
        f"{summary['test_acc']:.2f}%")
    model, meta = load_checkpoint(out / "ann" / "last", device=cfg.device)
    calib = build_dataset(cfg.dataset, cfg.data, "train", augment="none")
    test_full = build_dataset(cfg.dataset, cfg.data, "test")
    test = test_subset(test_full, cfg.test_images)
    subset = subset_name(len(test), len(test_full))
    loader = DataLoader(test, batch_size=cfg.eval_batch_size, num_workers=cfg.workers)
    base = ConvertConfig(num_images=cfg.calib_images)
    results = ResultsFile(
        out / "results.json",
        config={"quickstart": dataclasses.asdict(cfg), "train": summary["config"], "convert": base.to_dict()},
        protocol={"dataset": cfg.dataset, "ann_epoch": meta.get("epoch"),
                  "ann_test_acc": meta.get("test_acc"), "test_images": subset, "convert": base.to_dict()},
    )
    ann_acc = ensure_ann_accuracy(results, model, loader, cfg.device)
    results.set_ann(test_acc_full=summary["test_acc"], train_seconds=summary["train_seconds"],
                    arch=meta["arch"], epochs=meta.get("epoch"))
    t1 = time.perf_counter()
    rows = run_sweep(model, calib, loader, results, cfg.methods, cfg.Ts, [cfg.seed], base,
                     cfg.device, cfg.progress)
    seconds["sweep"] = time.perf_counter() - t1
    say(f"converted and evaluated {len(rows)} SNNs in {seconds['sweep']:.0f} s")

    t2 = time.perf_counter()
    rate_cfg = make_config(base, method="advanced", T=cfg.rate_T, seed=cfg.seed)
    snn = convert(model, calib, rate_cfg)
    snn_path = save(snn, out / f"snn_advanced_T{cfg.rate_T}", meta={
        "ann": meta, "config": rate_cfg.to_dict(), "input_shape": list(test[0][0].shape),
        "ann_checkpoint": str((out / "ann" / "last").resolve()), "dataset": cfg.dataset,
    })
    rates = firing_rates(snn, loader, max_images=cfg.rate_images)
    seconds["rates"] = time.perf_counter() - t2

    name = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}[cfg.dataset]
    title = f"cnn_small on {name}: SNN accuracy on {len(test)} test images"
    table = accuracy_table(rows, ann_acc, cfg.methods, cfg.Ts)
    files = {
        "results": str(results.path),
        "csv": str(write_csv(out / "results.csv", rows)),
        "table": str(_write_markdown(out / "results.md", title, table, cfg, subset, summary)),
        "accuracy_plot": str(plots.plot_accuracy(rows, out / "accuracy_vs_T.png", ann_acc, title=title,
                                                 methods=cfg.methods)),
        "rates_plot": str(plots.plot_firing_rates(
            rates, out / "firing_rates.png",
            title=f"Firing rates of cnn_small (advanced, T={cfg.rate_T}), {name}")),
        "snn": str(snn_path),
        "ann": str(out / "ann" / "last.safetensors"),
    }
    seconds["total"] = time.perf_counter() - t0
    runs = [*results.extra.get("runs", []), {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), **seconds}]
    results.set_extra(rates=rates, files=files, runs=runs)  # one entry per call: later ones resume
    return QuickstartResult(cfg.dataset, ann_acc, summary["test_acc"], summary["train_seconds"], len(test),
                            subset, rows, rates, table, files, seconds)


def _write_markdown(path: Path, title: str, table: str, cfg: QuickstartConfig, subset: str,
                    summary: dict[str, Any]) -> Path:
    from snncal.core.files import atomic_write_text

    lines = [
        f"# {title}", "",
        f"Each SNN is converted and calibrated for its T ({cfg.calib_images} calibration images, seed "
        f"{cfg.seed}) and evaluated on {subset}. The ANN column is the ANN on the same images; on the "
        f"whole test set it scores {summary['test_acc']:.2f}% after {summary['epochs']} epochs "
        f"({summary['train_seconds']:.0f} s of training).", "",
        table,
    ]
    return atomic_write_text(path, "\n".join(lines))

