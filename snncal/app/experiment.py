"""Sweeps of conversion settings: methods x T x seeds, one converted network per row, resumable.

Each row follows the paper's protocol: the network is converted and calibrated *for* its ``T``
(thresholds and calibration depend on ``T``), with calibration images drawn by its seed, and
evaluated at that ``T``.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from snncal.app.results import ResultsFile, SweepRow
from snncal.core.config import ConvertConfig, make_config
from snncal.core.convert import convert
from snncal.core.evaluate import evaluate

__all__ = [
    "PAPER_METHODS", "PAPER_TS", "ensure_ann_accuracy", "run_sweep", "subset_name", "sweep_keys",
    "test_subset",
]

log = logging.getLogger("snncal")

PAPER_METHODS = ("none", "light", "advanced")
PAPER_TS = (32, 64, 128, 256, 2048)  # Li et al. 2021, Table 9


def test_subset(dataset: Dataset, n: int | None) -> Dataset:
    """A fixed, named test subset: ``n`` images evenly spaced through the split (indices ``i * len // n``).

    Unlike the first ``n`` images, it covers every class when the split is sorted by class
    (ImageFolder copies); for ``n`` dividing the split size it is "every k-th image".
    """
    total = len(dataset)  # type: ignore[arg-type]
    if n is None or n >= total:
        return dataset
    return Subset(dataset, [i * total // n for i in range(n)])


def subset_name(n: int, total: int) -> str:
    """How :func:`test_subset` is described in tables and logs."""
    if n >= total:
        return f"all {total} test images"
    k = total // n
    suffix = "th" if k % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    step = f"every {k}{suffix}" if total % n == 0 else f"indices i * {total} // {n}"
    return f"{n} of {total} test images ({step})"


def sweep_keys(
    methods: Sequence[str], Ts: Sequence[int], seeds: Sequence[int]
) -> list[tuple[str, int, int]]:
    """Rows of a sweep in run order: seed-major, so each finished seed is a complete table."""
    return [(m, T, s) for s in seeds for m in methods for T in Ts]


def ensure_ann_accuracy(
    results: ResultsFile, model: nn.Module, loader: Iterable, device: torch.device | str | None = None
) -> float:
    """The ANN's accuracy on ``loader``, from ``results`` when already there, else measured and saved."""
    if "acc" not in results.ann:
        t0 = time.perf_counter()
        acc = evaluate(model, loader, device=device)["ann"]
        results.set_ann(acc=acc, eval_seconds=time.perf_counter() - t0)
    return float(results.ann["acc"])


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def run_row(
    model: nn.Module,
    calib_data: Dataset,
    test_loader: Iterable,
    cfg: ConvertConfig,
    device: torch.device | str | None = None,
) -> SweepRow:
    """Convert ``model`` with ``cfg`` and evaluate it at ``cfg.T``."""
    t0 = time.perf_counter()
    snn = convert(model, calib_data, cfg)
    t1 = time.perf_counter()
    acc = evaluate(snn, test_loader, T=[cfg.T], device=device)[cfg.T]
    layers = snn.calibration.layers if snn.calibration is not None else []
    return SweepRow(
        method=cfg.method, T=cfg.T, seed=cfg.seed, acc=acc,
        test_images=len(getattr(test_loader, "dataset", [])),  # type: ignore[arg-type]
        convert_seconds=t1 - t0, eval_seconds=time.perf_counter() - t1,
        calib_mse_before=_mean([layer.mse_before for layer in layers]),
        calib_mse_after=_mean([layer.mse_after for layer in layers]),
    )


def run_sweep(
    model: nn.Module,
    calib_data: Dataset,
    test_loader: Iterable,
    results: ResultsFile,
    methods: Sequence[str],
    Ts: Sequence[int],
    seeds: Sequence[int],
    base: ConvertConfig | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[SweepRow]:
    """Run every ``(method, T, seed)`` row not yet in ``results``, saving each as it finishes.

    Args:
        model: the trained ANN (on ``device``).
        calib_data: data set the calibration images are drawn from (by each row's seed).
        test_loader: batches of ``(x, y)`` the SNN is evaluated on.
        results: the resumable results file; rows already in it are skipped.
        methods, Ts, seeds: the grid.
        base: conversion options shared by all rows (``method``, ``T``, ``seed`` are overridden).
        device: where to evaluate.
        progress: a progress bar over rows.

    Returns:
        The rows of this grid (done before or now), in run order.
    """
    keys = sweep_keys(methods, Ts, seeds)
    todo = [k for k in keys if not results.done(k)]
    if len(todo) < len(keys):
        log.info("resuming %s: %d of %d rows done", results.path, len(keys) - len(todo), len(keys))
    bar = tqdm(todo, desc="sweep", disable=not progress, leave=False)
    for method, T, seed in bar:
        bar.set_postfix_str(f"{method} T={T} seed={seed}")
        cfg = make_config(base, method=method, T=T, seed=seed)
        row = run_row(model, calib_data, test_loader, cfg, device)
        results.add(row)
        log.info("%s T=%d seed=%d: %.2f%% (%.1f s)", method, T, seed, row.acc,
                 row.convert_seconds + row.eval_seconds)
    by_key = {r.key: r for r in results.rows}
    return [by_key[k] for k in keys]
