"""Figures of an experiment: accuracy vs T per method, per-layer firing rates and costs.

matplotlib is an optional extra (``pip install snncal[plot]``): without it :func:`available` is
false, the commands skip their figures, and a plot function says what to install.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snncal.app.results import Row, summarize
from snncal.core.evaluate import LayerRate
from snncal.core.files import atomic_write_bytes
from snncal.core.stats import NetworkStats

__all__ = [
    "available",
    "plot_accuracy",
    "plot_firing_rates",
    "plot_layer_stats",
]

_STYLE = {  # method -> (colour, marker); others cycle through the default colours
    "none": ("#7f7f7f", "o"),
    "light": ("#1f77b4", "s"),
    "advanced": ("#d62728", "^"),
    "light+": ("#17becf", "s"),
    "advanced+": ("#9467bd", "^"),
}


def available() -> bool:
    """Whether matplotlib is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot() -> Any:
    if not available():
        raise ImportError("plots need matplotlib: pip install 'snncal[plot]' (or matplotlib)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_accuracy(
    rows: Sequence[Row],
    path: str | Path,
    ann_acc: float | None = None,
    title: str = "",
    methods: Sequence[str] | None = None,
) -> Path:
    """Top-1 accuracy vs T (log2 axis), one line per method (mean, with a ±std band over seeds).

    The ANN's accuracy is a dashed horizontal line. Written atomically to ``path`` (PNG).
    """
    summary = summarize(rows)
    methods = list(methods or dict.fromkeys(r.method for r in rows))
    fig, ax = _pyplot().subplots(figsize=(6.4, 4.2))
    lows, seeds = [], max((n for _, _, n in summary.values()), default=1)
    for i, m in enumerate(methods):
        Ts = sorted(T for (mm, T) in summary if mm == m)
        if not Ts:
            continue
        mean = [summary[(m, T)][0] for T in Ts]
        std = [summary[(m, T)][1] for T in Ts]
        colour, marker = _STYLE.get(m, (f"C{(i + 5) % 10}", "D"))
        ax.plot(Ts, mean, marker=marker, color=colour, label=m, linewidth=1.8, markersize=6)
        if any(std):
            ax.fill_between(Ts, [a - s for a, s in zip(mean, std)], [a + s for a, s in zip(mean, std)],
                            color=colour, alpha=0.15, linewidth=0)
        lows.append(min(mean))
    if ann_acc is not None:
        ax.axhline(ann_acc, color="black", linestyle="--", linewidth=1.2, label=f"ANN ({ann_acc:.2f}%)")
    Ts = sorted({r.T for r in rows})
    ax.set_xscale("log", base=2)
    if Ts:
        ax.set_xticks(Ts, [str(T) for T in Ts])
        ax.minorticks_off()
    top = max([ann_acc or 0.0, *(summary[k][0] + summary[k][1] for k in summary)])
    bottom = min(lows) if lows else 0.0
    pad = max(0.5, 0.08 * (top - bottom))
    ax.set_ylim(max(0.0, bottom - pad), min(100.0, top + pad))
    ax.set_xlabel("simulation length T (time steps, log scale)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title or "SNN accuracy vs T")
    ax.grid(True, which="major", alpha=0.3)
    legend = "calibration" if seeds < 2 else f"calibration (band: ± std, {seeds} seeds)"
    ax.legend(title=legend, loc="lower right")
    return _save(fig, path)


def plot_firing_rates(rates: Sequence[LayerRate], path: str | Path, title: str = "") -> Path:
    """Bar chart of each IF layer's mean firing rate (spikes per neuron per step), in graph order."""
    names = [r.name for r in rates]
    values = [r.rate for r in rates]
    fig, ax = _pyplot().subplots(figsize=(max(5.0, 0.55 * len(rates) + 2.5), 4.2))
    bars = ax.bar(range(len(rates)), values, color="#1f77b4")
    for bar, r in zip(bars, rates):
        ax.annotate(f"{r.rate:.3f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(rates)), names, rotation=45 if len(rates) > 4 else 0,
                  ha="right" if len(rates) > 4 else "center", fontsize=8)
    ax.set_ylim(0, max([*values, 0.01]) * 1.18)
    ax.set_xlabel("IF layer (named after the ANN activation it replaces)")
    ax.set_ylabel("firing rate (spikes / neuron / step)")
    T = rates[0].T if rates else 0
    ax.set_title(title or f"Per-layer firing rates (T={T})")
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def plot_layer_stats(cost: NetworkStats, path: str | Path, title: str = "") -> Path:
    """Two panels, one bar per IF layer in graph order: the firing rate (spikes per neuron per
    step) above, the synaptic operations per image below (log axis when they span over 100x)."""
    layers = cost.layers
    names = [layer.name for layer in layers]
    rates = [layer.rate for layer in layers]
    sops = [layer.sops_per_image for layer in layers]
    fig, (top, bottom) = _pyplot().subplots(2, 1, sharex=True,
                                      figsize=(max(5.0, 0.55 * len(layers) + 2.5), 6.4))
    top.bar(range(len(layers)), rates, color="#1f77b4")
    top.set_ylim(0, max([*rates, 0.01]) * 1.18)
    top.set_ylabel("firing rate\n(spikes / neuron / step)")
    bottom.bar(range(len(layers)), sops, color="#d62728")
    positive = [v for v in sops if v > 0]
    if positive and max(positive) > 100 * min(positive):
        bottom.set_yscale("log")
    bottom.set_ylabel("synaptic operations / image")
    bottom.set_xticks(range(len(layers)), names, rotation=45 if len(layers) > 4 else 0,
                      ha="right" if len(layers) > 4 else "center", fontsize=8)
    bottom.set_xlabel("IF layer (named after the ANN activation it replaces)")
    for ax in (top, bottom):
        ax.grid(True, axis="y", alpha=0.3)
    ratio = cost.snn_energy_pj / cost.ann_energy_pj if cost.ann_energy_pj else float("nan")
    top.set_title(title or f"Per-layer activity and cost (T={cost.T}; SNN / ANN energy, "
                  f"operations only: {ratio:.2f})")
    return _save(fig, path)
