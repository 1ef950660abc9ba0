"""Experiments: methods x T x seeds on one model, one converted network per row, resumable.

Each row follows the paper's protocol: the network is converted and calibrated *for* its ``T``
(thresholds and calibration depend on ``T``), with calibration images drawn by its seed, and
evaluated at that ``T`` on a fixed, named test subset, against the ANN on the same images. The one
:class:`Experiment` is behind ``snncal sweep``, ``snncal reproduce`` and the quickstart, so that
every accuracy published in docs/ comes from a command a user can run.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from snncal.app.results import ResultsFile, Row, write_csv
from snncal.app.tables import accuracy_table, seconds_table
from snncal.core import distributed as dist
from snncal.core.calibrate import get_method
from snncal.core.config import ConvertConfig, make_config
from snncal.core.convert import calibration_set, convert
from snncal.core.evaluate import evaluate
from snncal.core.files import atomic_write_text
from snncal.core.subsets import describe_subset, evenly_spaced

__all__ = [
    "PAPER_METHODS",
    "PAPER_TS",
    "Experiment",
    "calibration_share",
    "grid",
]

log = logging.getLogger("snncal")

PAPER_METHODS = ("spike_norm", "hybrid", "rmp", "tsc", "opt", "none", "light", "advanced")
PAPER_TS = (32, 64, 128, 256, 2048)  # Li et al. 2021, Table 9


def grid(methods: Sequence[str], Ts: Sequence[int], seeds: Sequence[int]) -> list[tuple[str, int, int]]:
    """Rows ``(method, T, seed)`` in run order: seed-major, so each finished seed is a complete
    table. Unknown methods and bad T fail here, before any work."""
    for m in methods:
        get_method(m)
    for T in Ts:
        make_config(T=T)
    if not methods or not Ts or not seeds:
        raise ValueError("an experiment needs at least one method, one T and one seed")
    return [(m, T, s) for s in seeds for m in methods for T in Ts]


def calibration_share(data: Dataset, cfg: ConvertConfig) -> Dataset | list:
    """What this rank calibrates on: ``data`` itself in one process; under ``torch.distributed``
    its block of the very images one process would draw with ``cfg.seed``, so that the ranks
    together calibrate on the same set (and give the same files) as one process."""
    if not dist.is_parallel():
        return data
    images, labels = calibration_set(data, cfg.num_images, cfg.seed)
    block = dist.shard_range(len(images), dist.rank(), dist.world_size())
    return [(images[block.start : block.stop], None if labels is None else labels[block.start : block.stop])]


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


class Experiment:
    """One model, its calibration data and a fixed test subset, and the rows run on them so far.

    Args:
        results: path of the resumable results file (``STEM.json``; tables go beside it).
        model: the trained ANN, on ``device``.
        calib_data: the data set calibration images are drawn from (by each row's seed).
        test_data: the test split; ``test_images`` of it, evenly spaced, are evaluated.
        base: conversion options shared by all rows (``method``, ``T``, ``seed`` are per row).
        protocol: what else decides the numbers (checkpoint digest, architecture, data set);
            resuming a file of another protocol stops with a message instead of mixing results.
        config: the run's whole configuration, echoed into the results file.
        train_data: the labelled training set of methods that train the converted network
            (``hybrid``); under ``torch.distributed``, this rank's shard.
    """

    def __init__(
        self,
        results: str | Path,
        model: nn.Module,
        calib_data: Dataset,
        test_data: Dataset,
        base: ConvertConfig,
        *,
        test_images: int | None = None,
        batch_size: int = 100,
        workers: int = 0,
        device: torch.device | str = "cpu",
        protocol: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        progress: bool = False,
        train_data: Dataset | None = None,
    ) -> None:
        self.model, self.calib_data, self.base, self.device = model, calib_data, base, device
        self.train_data = train_data
        self.progress = progress
        self.test = evenly_spaced(test_data, test_images)
        self.subset = describe_subset(len(self.test), len(test_data))  # type: ignore[arg-type]
        self.batch_size, self.workers = batch_size, workers
        # cache_gb bounds memory, never the numbers (tests/test_calibrate.py): a run restarted
        # with less memory resumes its file
        fixed = {k: v for k, v in base.to_dict().items() if k not in ("method", "T", "seed", "cache_gb")}
        self.results = ResultsFile(results, config or {}, {
            **(protocol or {}), "test_images": self.subset, "convert": fixed,
        })

    @property
    def ann_accuracy(self) -> float:
        """The ANN's top-1 accuracy on the test subset (measured once, kept in the results file)."""
        if "acc" not in self.results.ann:
            t0 = time.perf_counter()
            acc = evaluate(self.model, self.test, device=self.device, batch_size=self.batch_size,
                           num_workers=self.workers).ann
            self.results.set_ann(acc=acc, eval_seconds=time.perf_counter() - t0)
        return float(self.results.ann["acc"])

    def run_row(self, method: str, T: int, seed: int) -> Row:
        """Convert the model for ``T`` with ``method`` and calibration images of ``seed``; evaluate."""
        cfg = make_config(self.base, method=method, T=T, seed=seed)
        t0 = time.perf_counter()
        snn = convert(self.model, calibration_share(self.calib_data, cfg), cfg,
                      train_data=self.train_data, progress=self.progress)
        t1 = time.perf_counter()
        result = evaluate(snn, self.test, T=[T], ann=self.model, device=self.device,
                          batch_size=self.batch_size, num_workers=self.workers)
        report = snn.calibration
        layers = report.layers if report is not None else []
        return Row(
            method=method, T=T, seed=seed, acc=result.snn[T], test_images=result.images,
            convert_seconds=t1 - t0, eval_seconds=time.perf_counter() - t1,
            agreement=result.agreement[T], logit_mse=result.logit_mse[T],
            calib_mse_before=_mean([layer.mse_before for layer in layers]),
            calib_mse_after=_mean([layer.mse_after for layer in layers]),
            threads=torch.get_num_threads(),
            extra={**report.extra, "step_seconds": report.step_seconds} if report is not None else {},
        )

    def run(self, methods: Sequence[str], Ts: Sequence[int], seeds: Sequence[int]) -> list[Row]:
        """Run every ``(method, T, seed)`` row not yet in the results file, saving each as it
        finishes; returns the rows of this grid (done before or now), in run order."""
        keys = grid(methods, Ts, seeds)
        self.ann_accuracy  # noqa: B018  (measured first: a table always has its ANN column)
        todo = [k for k in keys if not self.results.done(k)]
        if len(todo) < len(keys):
            log.info("resuming %s: %d of %d rows done", self.results.path, len(keys) - len(todo), len(keys))
        bar = tqdm(todo, desc="experiment", disable=not self.progress, leave=False)
        for method, T, seed in bar:
            bar.set_postfix_str(f"{method} T={T} seed={seed}")
            row = self.run_row(method, T, seed)
            self.results.add(row)
            log.info("%s T=%d seed=%d: %.2f%% (%.1f s)", method, T, seed, row.acc,
                     row.convert_seconds + row.eval_seconds)
        by_key = {r.key: r for r in self.results.rows}
        return [by_key[k] for k in keys]

    def write(
        self,
        rows: Sequence[Row],
        methods: Sequence[str],
        Ts: Sequence[int],
        title: str,
        network: str | None = None,
        columns: dict[str, str] | None = None,
    ) -> tuple[str, dict[str, str]]:
        """The Markdown table of ``rows`` (with the paper's rows of ``network`` when given) and the
        files written beside the results file: JSON, CSV, Markdown and, with matplotlib, a plot."""
        seeds = sorted({r.seed for r in rows})
        listed = ", ".join(map(str, seeds))
        seed_text = f"seed {listed}" if len(seeds) == 1 else f"seeds {listed} (mean ± std)"
        caption = (f"Top-1 accuracy (%) on {self.subset}; each SNN converted and calibrated for its T "
                   f"({self.base.num_images} calibration images, threshold rule {self.base.threshold} "
                   f"where the method uses it), {seed_text}.")
        table = accuracy_table(rows, self.ann_accuracy, methods, Ts, columns=columns, network=network)
        threads = sorted({r.threads for r in rows if r.threads is not None})
        table += f"\nConversion seconds (calibration included; CPU threads {threads}):\n\n"
        table += seconds_table(rows, methods, Ts)
        stem = self.results.path.with_suffix("")
        if not dist.is_main():  # rank 0 writes the files
            return f"{caption}\n\n{table}", {}
        files = {
            "json": str(self.results.path),
            "csv": str(write_csv(stem.with_suffix(".csv"), rows)),
            "markdown": str(atomic_write_text(stem.with_suffix(".md"), f"# {title}\n\n{caption}\n\n{table}")),
        }
        from snncal.app import plots

        if plots.available():
            files["plot"] = str(plots.plot_accuracy(rows, stem.with_suffix(".png"), self.ann_accuracy,
                                                    title=title, methods=methods))
        self.results.set_extra(files=files)
        return f"{caption}\n\n{table}", files
