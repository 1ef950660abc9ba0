"""The quickstart job (``snncal quickstart``, ``make demo``).

Train the zoo's ``cnn_small`` for a few epochs, convert it with each calibration method at each T
(converted and calibrated *for* that T, as in the paper), evaluate every network on the same
fixed, named test subset (``test_images`` images evenly spaced through the test set, e.g. every
10th), and write the table, the plots, a saved SNN and one results file.

The table must not depend on how busy the machine is: the run uses a fixed number of CPU threads
(``threads``, default 2), since float sums (in training and in calibration) depend on how the work
is split across threads, never on the load.
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

from snncal.app.experiment import Experiment, grid
from snncal.app.options import positive_int
from snncal.app.results import Row
from snncal.core.config import ConvertConfig, make_config
from snncal.core.convert import convert
from snncal.core.evaluate import LayerRate, firing_rates
from snncal.core.fields import help_field as _f

__all__ = [
    "QuickstartConfig",
    "QuickstartResult",
    "run_quickstart",
]

log = logging.getLogger("snncal")


@dataclass(frozen=True)
class QuickstartConfig:
    """Settings of the quickstart; the defaults are ``make demo``."""

    out: str = "runs/quickstart"
    data: str | None = _f(None, "a CIFAR-10 ImageFolder copy (ROOT/{train,test}/<class>/*); "
                          "None: Fashion-MNIST from /usr/share/datasets/fashion-mnist")
    epochs: int = _f(8, "training epochs", type=positive_int)
    batch_size: int = _f(128, "training batch size", type=positive_int)
    augment: str | None = _f(None, "None: none on Fashion-MNIST, basic on CIFAR-10",
                             choices=("none", "basic", "paper"))
    methods: tuple[str, ...] = _f(("none", "light", "advanced"), "calibration methods")
    Ts: tuple[int, ...] = _f((16, 32, 64, 128, 256, 2048), "one conversion per T",
                             flag="--T", type=positive_int)
    test_images: int = _f(1000, "SNNs are evaluated on N test images evenly spaced through the test set",
                          type=positive_int)
    calib_images: int = _f(256, "calibration images per conversion", type=positive_int)
    rate_T: int = _f(32, "firing rates and the saved SNN: advanced calibration at this T",  # noqa: N815
                     type=positive_int)
    rate_images: int = _f(256, "images for the firing rates", type=positive_int)
    eval_batch_size: int = _f(100, "test batch size", type=positive_int)
    seed: int = _f(0, "seed of training and of the calibration images")
    threads: int = 2
    device: str = "cpu"
    workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        grid(self.methods, (*self.Ts, self.rate_T), [self.seed])  # fail before training
        make_config(num_images=self.calib_images, batch_size=self.batch_size)
        for name in ("epochs", "test_images", "rate_images", "eval_batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

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
    rows: list[Row]
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
        seed=cfg.seed, device=cfg.device, threads=cfg.threads, progress=cfg.progress,
    )
    return train(tc)


def run_quickstart(
    cfg: QuickstartConfig, say: Callable[[str], None] | None = None
) -> QuickstartResult:
    """Train, convert, calibrate at every T, evaluate; write results, tables and plots under ``cfg.out``.

    Every step resumes: training from its state file, the experiment from its results file. ``say``
    receives one line at the end of each step (the CLI prints it).
    """
    say = say or log.info
    from snncal.ann.checkpoint import load_checkpoint
    from snncal.app import plots
    from snncal.app.runtime import set_threads, splits
    from snncal.core.export import save

    out = Path(cfg.out)
    set_threads(cfg.threads)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    summary = _train(cfg, out)
    seconds["train"] = time.perf_counter() - t0
    say(f"trained {summary['epochs']} epochs in {summary['train_seconds']:.0f} s: test accuracy "
        f"{summary['test_acc']:.2f}%")
    model, meta = load_checkpoint(out / "ann" / "last", device=cfg.device)
    _, calib, test = splits(meta, cfg.dataset, cfg.data)
    base = ConvertConfig(num_images=cfg.calib_images)
    experiment = Experiment(
        out / "results.json", model, calib, test, base, test_images=cfg.test_images,
        batch_size=cfg.eval_batch_size, workers=cfg.workers, device=cfg.device, progress=cfg.progress,
        config={"quickstart": dataclasses.asdict(cfg), "train": summary["config"]},
        protocol={"dataset": cfg.dataset, "ann_epoch": meta.get("epoch"),
                  "ann_test_acc": meta.get("test_acc")},
    )
    t1 = time.perf_counter()
    rows = experiment.run(cfg.methods, cfg.Ts, [cfg.seed])
    seconds["sweep"] = time.perf_counter() - t1
    say(f"converted and evaluated {len(rows)} SNNs in {seconds['sweep']:.0f} s")

    t2 = time.perf_counter()
    rate_cfg = make_config(base, method="advanced", T=cfg.rate_T, seed=cfg.seed)
    snn = convert(model, calib, rate_cfg)
    snn_path = save(snn, out / f"snn_advanced_T{cfg.rate_T}", meta={
        "ann": meta, "config": rate_cfg.to_dict(), "input_shape": list(test[0][0].shape),
        "ann_checkpoint": str((out / "ann" / "last").resolve()), "dataset": cfg.dataset,
    })
    loader = DataLoader(experiment.test, batch_size=cfg.eval_batch_size, num_workers=cfg.workers)
    rates = firing_rates(snn, loader, max_images=cfg.rate_images)
    seconds["rates"] = time.perf_counter() - t2

    name = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}[cfg.dataset]
    title = f"cnn_small on {name}: SNN accuracy on {len(experiment.test)} test images"
    table, files = experiment.write(rows, cfg.methods, cfg.Ts, title)
    files["results"] = files.pop("json")
    files["table"] = files.pop("markdown")
    if "plot" in files:
        files["accuracy_plot"] = files.pop("plot")
        files["rates_plot"] = str(plots.plot_firing_rates(
            rates, out / "firing_rates.png",
            title=f"Firing rates of cnn_small (advanced, T={cfg.rate_T}), {name}"))
    files.update(snn=str(snn_path), ann=str(out / "ann" / "last.safetensors"))
    seconds["total"] = time.perf_counter() - t0
    runs = [*experiment.results.extra.get("runs", []),
            {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), **seconds}]
    experiment.results.set_extra(rates=rates, files=files, runs=runs)  # one entry per call
    return QuickstartResult(cfg.dataset, experiment.ann_accuracy, summary["test_acc"],
                            summary["train_seconds"], len(experiment.test), experiment.subset,
                            rows, rates, table, files, seconds)
