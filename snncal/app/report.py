"""Markdown tables of what calibration and simulation measured."""

from __future__ import annotations

from snncal.app.results import markdown_table
from snncal.core.calibrate import CalibrationReport
from snncal.core.evaluate import LayerRate
from snncal.core.stats import NetworkStats

__all__ = [
    "calibration_table",
    "rates_table",
    "stats_table",
]


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


def stats_table(stats: NetworkStats) -> str:
    """Markdown tables of what a spike costs: per IF layer (with a total line), then the SNN
    against its ANN (operations per image and energy, with and without memory accesses)."""
    rows = [[layer.name, layer.neurons, f"{layer.rate:.4f}", f"{layer.spikes_per_image:.0f}",
             f"{layer.fanout:.1f}", f"{layer.sops_per_image:.4g}"] for layer in stats.layers]
    rows.append(["(all)", stats.neurons, f"{stats.rate:.4f}", f"{stats.spikes_per_image:.0f}", "-",
                 f"{stats.sops_per_image - stats.input_sops_per_image:.4g}"])
    if stats.input_sops_per_image:
        rows.append(["(input, expected)", "-", "-", "-", "-", f"{stats.input_sops_per_image:.4g}"])
    headers = ["layer", "neurons", "spikes / neuron / step", f"spikes / image (T={stats.T})",
               "mean fan-out", "SOPs / image"]
    layers = markdown_table(headers, rows)

    def ratio(snn: float, ann: float) -> str:
        return f"{snn / ann:.3f}" if ann else "-"

    e = stats  # short name for the rows below
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
