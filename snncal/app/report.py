"""Markdown tables of what calibration and simulation measured."""

from __future__ import annotations

from snncal.app.results import markdown_table
from snncal.core.calibrate import CalibrationReport
from snncal.core.evaluate import LayerRate

__all__ = ["calibration_table", "rates_table"]


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
