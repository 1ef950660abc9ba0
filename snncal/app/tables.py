"""Markdown tables, all in one place: accuracy over methods and T (the paper's Table 9 layout),
conversion seconds, per-layer firing rates, calibration reports and what a spike costs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from snncal.app.paper import published
from snncal.app.results import Row, summarize
from snncal.core.calibrate import CalibrationReport
from snncal.core.evaluate import LayerRate
from snncal.core.stats import NetworkStats

__all__ = [
    "accuracy_table",
    "calibration_table",
    "markdown_table",
    "rates_table",
    "seconds_table",
    "stats_table",
]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; text columns align left, numbers right; ``|`` in cells is escaped."""
    cells = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    numeric = [
        all(_is_number(r[i]) for r in cells if i < len(r) and r[i] not in ("", "-")) and bool(cells)
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cells if i < len(r)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if num else ":" + "-" * (w + 1) for w, num in zip(widths, numeric)
    ) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in cells)]) + "\n"


def _is_number(text: str) -> bool:
    try:
        float(text.split(" ")[0])
    except ValueError:
        return False
    return True


def _cells(summary: dict, method: str, Ts: Sequence[int], digits: int) -> list[str]:
    cells = []
    for T in Ts:
        if (method, T) not in summary:
            cells.append("-")
            continue
        mean, std, n = summary[(method, T)]
        cells.append(f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}")
    return cells


def accuracy_table(
    rows: Sequence[Row],
    ann_acc: float | None,
    methods: Sequence[str] | None = None,
    Ts: Sequence[int] | None = None,
    digits: int = 2,
    columns: dict[str, str] | None = None,
    network: str | None = None,
) -> str:
    """The paper's layout (Li et al. 2021, Table 9): one row per method, ANN accuracy, one column per T.

    Cells are ``mean ± std`` over seeds when there are several, ``-`` when missing. ``columns``
    (name -> value, the same on every row, e.g. ``{"Use BN": "yes"}``) go between method and ANN.
    With ``network``, each of our rows has under it the paper's published row for that network
    (Table 9, CIFAR-10) when there is one; the paper's last column is T >= 2048.
    """
    columns = columns or {}
    summary = summarize(rows)
    methods = list(methods or dict.fromkeys(r.method for r in rows))
    Ts = sorted(Ts or {r.T for r in rows})
    ann = "-" if ann_acc is None else f"{ann_acc:.{digits}f}"
    body = []
    for m in methods:
        body.append([m, *columns.values(), ann, *_cells(summary, m, Ts, digits)])
        paper = published(network, m) if network else None
        if paper is not None:
            paper_ann, by_T = paper
            paper_cells = [by_T.get(min(T, 2048)) for T in Ts]
            body.append([f"{m} (paper)", *("" for _ in columns), f"{paper_ann:.2f}",
                         *("-" if c is None else f"{c:.2f}" for c in paper_cells)])
    return markdown_table(["Method", *columns, "ANN", *(f"T={T}" for T in Ts)], body)


def seconds_table(rows: Sequence[Row], methods: Sequence[str], Ts: Sequence[int]) -> str:
    """Conversion (calibration) seconds of each method at each T, mean over seeds: what a method
    costs, next to what it gains."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        groups.setdefault((r.method, r.T), []).append(r.convert_seconds)
    Ts = sorted(Ts)
    body = [[m, *(f"{statistics.fmean(groups[(m, T)]):.0f}" if (m, T) in groups else "-" for T in Ts)]
            for m in methods]
    return markdown_table(["Method", *(f"T={T}" for T in Ts)], body)


def rates_table(rates: list[LayerRate]) -> str:
    """Markdown table of per-layer firing rates, with a total line."""
    rows = [[r.name, r.neurons, f"{r.rate:.4f}", f"{r.spikes_per_image:.0f}"] for r in rates]
    neurons = sum(r.neurons for r in rates)
    spikes = sum(r.spikes_per_image for r in rates)
    T = rates[0].T if rates else 0
    rows.append(["(all)", neurons, f"{spikes / max(1, neurons * T):.4f}", f"{spikes:.0f}"])
    return markdown_table(["layer", "neurons", "spikes / neuron / step", f"spikes / image (T={T})"], rows)


def calibration_table(report: CalibrationReport) -> str:
    """Markdown table of a calibration: each layer's rate error against the ANN, before and after.

    "mean error" is the mean over channels of the absolute channel-wise mean error (what bias
    correction removes); "weight loss" is weight calibration's loss before -> after.
    """
    rows = []
    for layer in report.layers:
        wl = f"{layer.weight_loss[0]:.4g} -> {layer.weight_loss[1]:.4g}" if layer.weight_loss else "-"
        rows.append([
            layer.name, f"{layer.mse_before:.4g}", f"{layer.mse_after:.4g}",
            f"{layer.mean_error_before:.4g}", f"{layer.mean_error_after:.4g}", wl, f"{layer.seconds:.1f}",
        ])
    headers = ["layer", "MSE before", "MSE after", "mean error before", "mean error after"]
    return markdown_table([*headers, "weight loss", "seconds"], rows)


def stats_table(cost: NetworkStats) -> str:
    """Markdown tables of what a spike costs: per IF layer (with a total line), then the SNN
    against its ANN (operations per image and energy, with and without memory accesses)."""
    rows = [[layer.name, layer.neurons, f"{layer.rate:.4f}", f"{layer.spikes_per_image:.0f}",
             f"{layer.fanout:.1f}", f"{layer.sops_per_image:.4g}"] for layer in cost.layers]
    rows.append(["(all)", cost.neurons, f"{cost.rate:.4f}", f"{cost.spikes_per_image:.0f}", "-",
                 f"{cost.sops_per_image - cost.input_sops_per_image:.4g}"])
    if cost.input_sops_per_image:
        rows.append(["(input, expected)", "-", "-", "-", "-", f"{cost.input_sops_per_image:.4g}"])
    headers = ["layer", "neurons", "spikes / neuron / step", f"spikes / image (T={cost.T})",
               "mean fan-out", "SOPs / image"]
    layers = markdown_table(headers, rows)

    def ratio(snn: float, ann: float) -> str:
        return f"{snn / ann:.3f}" if ann else "-"

    e = cost  # short name for the rows below
    cost = [
        ["MACs / image", f"{e.ann_macs_per_image:.4g}", f"{e.snn_macs_per_image:.4g}",
         ratio(e.snn_macs_per_image, e.ann_macs_per_image)],
        ["SOPs (ACs) / image", "0", f"{e.sops_per_image:.4g}", "-"],
        ["energy, operations (µJ)", f"{e.ann_energy_pj * 1e-6:.4g}", f"{e.snn_energy_pj * 1e-6:.4g}",
         ratio(e.snn_energy_pj, e.ann_energy_pj)],
        ["energy, with memory (µJ)", f"{e.ann_energy_with_memory_pj * 1e-6:.4g}",
         f"{e.snn_energy_with_memory_pj * 1e-6:.4g}",
         ratio(e.snn_energy_with_memory_pj, e.ann_energy_with_memory_pj)],
    ]
    return layers + "\n\n" + markdown_table(["per image", "ANN", f"SNN (T={e.T})", "SNN / ANN"], cost)
