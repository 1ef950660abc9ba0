"""Firing rates against a slow reference, results files and tables, plots."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torch import nn

import snncal
from snncal.app.plots import plot_accuracy, plot_firing_rates
from snncal.app.results import ResultsFile, Row, to_csv
from snncal.app.tables import accuracy_table, calibration_table, markdown_table, rates_table
from snncal.core.evaluate import LayerRate, firing_rates
from snncal.core.neuron import if_scan


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
    ).eval()


# groups of one image in chunks of 4 steps, and all 12 images and 20 steps in one chunk
@pytest.mark.parametrize("max_batch", [4, 1024])
def test_firing_rates_match_a_loop_over_time(max_batch: int) -> None:
    x = torch.rand(12, 3, 8, 8)
    snn = snncal.convert(_net(), x, T=16, threshold="max", num_images=12)
    for n in snn.neurons().values():  # no exact tie with the largest current, which one ulp of
        n.threshold.mul_(1.01)  # conv rounding (batch 1 vs 12) would break either way
    snn.max_batch = max_batch
    rates = firing_rates(snn, [(x[:7], None), (x[7:], None)], T=20)

    g, T = snn.graph, 20
    (n1, th1), (n2, th2) = [(n, m.threshold) for n, m in snn.neurons().items()]
    s1, _ = if_scan(g.get_submodule("0")(x), torch.zeros(12, 6, 8, 8), th1, T)  # [T, N, ...] * Vth
    c2 = g.get_submodule("2")(s1.flatten(0, 1)).view(T, 12, 4, 4, 4)
    s2, _ = if_scan(c2, torch.zeros(12, 4, 4, 4), th2, T)
    expected = [s1.ne(0).double().mean().item(), s2.ne(0).double().mean().item()]

    assert [r.name for r in rates] == [n1, n2]
    assert [r.neurons for r in rates] == [6 * 8 * 8, 4 * 4 * 4]
    assert [r.rate for r in rates] == pytest.approx(expected, rel=1e-12)
    assert rates[0].spikes_per_image == pytest.approx(expected[0] * 384 * T)
    assert 0 < rates[0].rate < 1
    assert firing_rates(snn, x, T=20, max_images=7)[0].rate == pytest.approx(
        firing_rates(snn, x[:7], T=20)[0].rate
    )
    text = rates_table(rates)
    assert "(all)" in text and n1 in text


def test_calibration_table_has_one_row_per_layer() -> None:
    x = torch.rand(16, 3, 8, 8)
    snn = snncal.convert(_net(), x, T=8, method="light", num_images=16)
    lines = calibration_table(snn.calibration).splitlines()
    assert len(lines) == 2 + len(snn.neurons())


def test_markdown_and_csv() -> None:
    table = markdown_table(["name", "acc"], [["a", "1.50"], ["bb", "10.25"]])
    assert table.splitlines() == [
        "| name |   acc |", "|:-----|------:|", "| a    |  1.50 |", "| bb   | 10.25 |",
    ]
    rows = [Row("none", 32, 0, 90.0, 100, 1.0, 2.0, extra={"k": [1, 2]})]
    text = to_csv(rows).splitlines()
    assert text[0].startswith("method,T,seed,acc") and '"{""k"": [1, 2]}"' in text[1]


def _row(method: str, T: int, seed: int, acc: float) -> Row:
    return Row(method, T, seed, acc, 100, 0.1, 0.2)


def test_accuracy_table_is_the_papers_layout() -> None:
    rows = [_row("none", 32, s, a) for s, a in ((0, 80.0), (1, 82.0))] + [_row("light", 32, 0, 90.0)]
    lines = accuracy_table(rows, 92.5, Ts=[32, 64]).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == ["Method", "ANN", "T=32", "T=64"]
    assert cells[2] == ["none", "92.50", "81.00 ± 1.41", "-"]
    assert cells[3] == ["light", "92.50", "90.00", "-"]


def test_results_file_resumes_and_guards_its_protocol(tmp_path) -> None:
    path = tmp_path / "r.json"
    res = ResultsFile(path, {"out": "x"}, {"model": "a"})
    res.add(_row("none", 32, 0, 80.0))
    res.add(_row("none", 32, 0, 81.0))  # same key: replaced
    res.set_ann(acc=92.0)
    again = ResultsFile(path, {"out": "y"}, {"model": "a"})
    assert again.done(("none", 32, 0)) and not again.done(("none", 32, 1))
    assert [r.acc for r in again.rows] == [81.0] and again.ann == {"acc": 92.0}
    assert json.loads(path.read_text())["config"] == {"out": "x"}
    with pytest.raises(ValueError, match="another protocol"):
        ResultsFile(path, {}, {"model": "b"})


def test_plots_are_written(tmp_path) -> None:
    rows = [_row(m, T, s, 80 + 2 * i + s) for i, m in enumerate(["none", "light", "advanced"])
            for T in (16, 64, 2048) for s in (0, 1)]
    path = plot_accuracy(rows, tmp_path / "acc.png", ann_acc=90.0, title="test")
    with Image.open(path) as im:
        assert im.size[0] > 600 and im.size[1] > 400
    rates = [LayerRate(f"layer{i}", 100, 0.1 * i, 10.0 * i, 32) for i in range(6)]
    with Image.open(plot_firing_rates(rates, tmp_path / "rates.png")) as im:
        assert im.size[0] > 600


def test_test_subset_is_fixed_and_covers_sorted_classes() -> None:
    from torch.utils.data import TensorDataset

    from snncal.core.subsets import describe_subset as subset_name
    from snncal.core.subsets import evenly_spaced as test_subset

    labels = torch.arange(10).repeat_interleave(100)  # sorted by class, like an ImageFolder
    data = TensorDataset(torch.zeros(1000, 1), labels)
    sub = test_subset(data, 50)
    assert [int(sub[i][1]) for i in range(50)] == [i // 5 for i in range(50)]
    assert test_subset(data, None) is data and test_subset(data, 5000) is data
    assert subset_name(50, 1000) == "50 of 1000 test images (every 20th)"
    assert subset_name(500, 1000) == "500 of 1000 test images (every 2nd)"
    assert subset_name(1000, 1000) == "all 1000 test images"


def test_table9_puts_the_papers_row_under_ours():
    rows = [Row(m, T, 0, acc, 100, 0.1, 0.2) for m, T, acc in
            (("light", 32, 91.0), ("light", 2048, 92.0), ("spike_norm", 2048, 50.0))]
    table = [line.split("|")[1:-1] for line in accuracy_table(
        rows, 92.5, ["spike_norm", "light"], [32, 2048], network="ResNet-20").splitlines()[2:]]
    cells = [[c.strip() for c in line] for line in table]
    assert cells == [
        ["spike_norm", "92.50", "-", "50.00"],
        ["spike_norm (paper)", "89.10", "-", "87.46"],
        ["light", "92.50", "91.00", "92.00"],
        ["light (paper)", "95.46", "94.44", "95.47"],
    ]


def test_layer_errors_split_a_layers_error_into_its_input_and_its_spike_trains():
    from snncal.core.evaluate import layer_errors

    x = torch.rand(32, 3, 8, 8)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(6, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 5)).eval()
    reference = snncal.convert(net, x, T=8, threshold="max")
    exact = layer_errors(reference, x, reference)
    assert [e.name for e in exact] == list(reference.neurons())[:-1]  # the last is read by no neuron
    # the first layer's current is the image itself, constant in time: no input error, and its rate
    # is ClipFloor of that current, so all its error is the quantisation of ClipFloor
    first = exact[0]
    assert first.input == 0 and first.temporal < 1e-12 and first.total > 0 and first.target > 0
    assert exact[1].temporal > 0  # spike trains in, not a constant current
    light = snncal.convert(net, x, T=8, method="light")
    errors = layer_errors(light, x, reference)
    assert all(e.total >= 0 and e.input >= 0 and e.temporal >= 0 for e in errors)
    assert first.excess == 0 and all(e.excess**2 <= e.temporal * (1 + 1e-6) for e in errors)


def test_layer_errors_sign_the_temporal_error_switched_inputs_fire_spikes_later_inputs_take_back():
    from snncal.core.evaluate import layer_errors

    # current = x1 - x2 / 2; switch-coded, both inputs are on at first and the smaller goes off
    # first: when x1 < x2 the neuron fires on +1/2 early, then gets -1/2 it cannot answer
    torch.manual_seed(0)
    x = torch.rand(64, 2, 4, 4)
    net = nn.Sequential(nn.Conv2d(2, 1, 1, bias=False), nn.ReLU(), nn.Conv2d(1, 1, 1, bias=False), nn.ReLU(),
                        nn.Flatten(), nn.Linear(16, 2)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, -0.5]).view(1, 2, 1, 1))
        net[2].weight.fill_(1.0)
    excess = {}
    for encoding in ("direct", "switch"):
        snn = snncal.convert(net, x, T=16, threshold="max", encoding=encoding)
        first = layer_errors(snn, x, snn)[0]
        excess[encoding] = first.excess
        assert first.excess**2 <= first.temporal  # a mean is at most the root mean square
    assert excess["direct"] == 0  # a constant current fires exactly its ClipFloor
    assert excess["switch"] > 0.02  # 0.0376 at this seed: a tenth of the activation's RMS (0.40)
