"""Per-layer activity of a spiking network: firing rates and spike counts, as data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from .calibrate import CalibrationReport
from .results import markdown_table
from .simulate import SpikingNetwork, simulate

__all__ = ["LayerRate", "calibration_table", "firing_rates", "rates_table"]


@dataclass
class LayerRate:
    """Activity of one IF layer, averaged over images and time steps.

    ``rate`` is spikes per neuron per time step (0 to 1); ``spikes_per_image`` counts the layer's
    spikes for one image over the whole simulation of ``T`` steps.
    """

    name: str
    neurons: int  # per image
    rate: float
    spikes_per_image: float
    T: int


@torch.no_grad()
def firing_rates(
    snn: SpikingNetwork,
    data: Tensor | Iterable,
    T: int | None = None,
    max_images: int | None = None,
) -> list[LayerRate]:
    """Mean firing rate of every IF layer of ``snn`` over ``data`` simulated for ``T`` steps.

    Args:
        snn: the spiking network.
        data: an input batch ``[N, ...]``, or an iterable of ``x`` or ``(x, y)`` batches.
        T: simulation length (default ``snn.T``).
        max_images: stop after this many images.

    Returns:
        One :class:`LayerRate` per neuron layer, in graph order.
    """
    T = T or snn.T
    device = next(iter(snn.buffers())).device
    counts: dict[str, Tensor] = {}
    seen = 0
    batches = [data] if isinstance(data, Tensor) else data
    for item in batches:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if max_images is not None:
            x = x[: max_images - seen]
        if len(x) == 0:
            break
        simulate(snn.graph, x.to(device), T, encoding=snn.encoding, max_batch=snn.max_batch,
                 spike_counts=counts)
        seen += len(x)
        if max_images is not None and seen >= max_images:
            break
    if seen == 0:
        raise ValueError("firing_rates got no images")
    rates = []
    for name in snn.neurons():
        n = counts[name].numel() if name in counts else 0
        total = float(counts[name].sum()) if name in counts else 0.0
        rates.append(LayerRate(name, n, total / max(1, n * seen * T), total / seen, T))
    return rates


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
