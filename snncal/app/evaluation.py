"""The evaluate job (``snncal evaluate``): accuracy of an ANN and/or an SNN at several T, the SNN's
firing rates and, if asked, its cost against the ANN; printed as tables and written to one file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import DataLoader, Dataset

from snncal.core import distributed as dist
from snncal.core.engine import SpikingNetwork

__all__ = ["run_evaluation"]


def run_evaluation(
    snn: SpikingNetwork | None,
    model: nn.Module | None,
    dataset: str,
    test: Dataset,
    *,
    out: str | Path,
    device: Any,
    T: Sequence[int],
    test_images: int | None,
    rate_T: int | None,
    rate_images: int,
    cost: bool,
    batch_size: int,
    workers: int,
    progress: bool,
    config: dict[str, Any],
    say: Callable[..., None],
) -> dict[str, Any]:
    """Evaluate ``snn`` (against its ANN ``model``) or, without an SNN, the ANN alone, on
    ``test_images`` test images evenly spaced through ``test``; then the SNN's firing rates (and
    with ``cost``, its synaptic operations and energy) on ``rate_images`` images at ``rate_T``.
    ``say`` prints lines; rank 0 writes ``out/evaluate.json``. Returns what it wrote."""
    from snncal.app import plots
    from snncal.app.tables import markdown_table, rates_table, stats_table
    from snncal.core.evaluate import evaluate, firing_rates
    from snncal.core.files import atomic_write_json
    from snncal.core.stats import stats
    from snncal.core.subsets import describe_subset, evenly_spaced

    data = evenly_spaced(test, test_images)
    subset = describe_subset(len(data), len(test))
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers)
    result: dict[str, Any] = {"config": config, "dataset": dataset, "test_subset": subset}
    say(f"{dataset}, {subset}", "")
    out = Path(out)
    if snn is None:
        evaluation = evaluate(model, data, device=device, progress=progress,
                              batch_size=batch_size, num_workers=workers)
        result["evaluation"] = evaluation
        say(f"ANN accuracy: {evaluation.ann:.2f}%")
    else:
        evaluation = evaluate(snn, data, T=T, ann=model, device=device, progress=progress,
                              batch_size=batch_size, num_workers=workers)
        rates = firing_rates(snn, loader, T=rate_T, max_images=rate_images)
        result.update(evaluation=evaluation, snn_T=snn.T, rates=rates, calibration=snn.calibration)
        ann = "-" if evaluation.ann is None else f"{evaluation.ann:.2f}"
        label = f"SNN ({snn.calibration.method if snn.calibration else '?'}, calibrated for T={snn.T})"
        say(markdown_table(["network", "ANN", *(f"T={t}" for t in evaluation.snn)],
                           [[label, ann, *(f"{a:.2f}" for a in evaluation.snn.values())]]))
        n = min(rate_images, evaluation.images)
        say(f"firing rates on {n} images (T={rates[0].T}):", "", rates_table(rates))
        files = {}
        if cost:
            result["stats"] = network_cost = stats(snn, loader, T=rate_T, max_images=rate_images)
            say(f"cost on {n} images (T={network_cost.T}):", "", stats_table(network_cost))
        if plots.available() and dist.is_main():
            files["rates_plot"] = str(plots.plot_firing_rates(rates, out / "firing_rates.png"))
            if cost:
                files["stats_plot"] = str(plots.plot_layer_stats(result["stats"], out / "layer_stats.png"))
        result["files"] = files
    if dist.is_main():
        atomic_write_json(out / "evaluate.json", result)
        say(f"wrote {out / 'evaluate.json'}")
    return result
