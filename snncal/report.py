"""Per-layer activity of a spiking network: firing rates and spike counts, as data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx

from .calibrate import CalibrationReport
from .results import markdown_table
from .simulate import SpikingNetwork, _Chunk, poisson

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


class _RateChunk(_Chunk):
    """The engine's chunk interpreter, also counting each neuron's spikes."""

    def __init__(self, *args: Any, counts: dict[str, Tensor], sizes: dict[str, int], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.counts, self.sizes = counts, sizes

    def _neuron(self, name: str, x: Tensor, temporal: bool) -> Tensor:
        out = super()._neuron(name, x, temporal)  # spikes * Vth, [steps * N, ...]
        fired = out.ne(0).sum(dtype=torch.float64)
        self.counts[name] = self.counts.get(name, torch.zeros((), dtype=torch.float64)) + fired.cpu()
        self.sizes[name] = out[0].numel()
        return out


def _count_spikes(
    gm: fx.GraphModule, x: Tensor, T: int, encoding: str, max_batch: int,
    counts: dict[str, Tensor], sizes: dict[str, int],
) -> None:
    """One simulation of ``x`` for ``T`` steps (chunked like :func:`snncal.simulate`), counting spikes."""
    chunk = max(1, min(T, max_batch // max(1, x.shape[0])))
    state: dict[str, Tensor] = {}
    static: dict = {}
    for t0 in range(0, T, chunk):
        steps = min(chunk, T - t0)
        inp = x if encoding == "direct" else poisson(x, steps)
        _RateChunk(
            gm, steps, T, state, static, static_input=encoding == "direct", counts=counts, sizes=sizes
        ).run(inp)


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
    sizes: dict[str, int] = {}
    seen = 0
    batches = [data] if isinstance(data, Tensor) else data
    for item in batches:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if max_images is not None:
            x = x[: max_images - seen]
        if len(x) == 0:
            break
        _count_spikes(snn.graph, x.to(device), T, snn.encoding, snn.max_batch, counts, sizes)
        seen += len(x)
        if max_images is not None and seen >= max_images:
            break
    if seen == 0:
        raise ValueError("firing_rates got no images")
    rates = []
    for name in snn.neurons():
        n = sizes.get(name, 0)
        total = float(counts.get(name, 0.0))
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
