"""What a spike costs: fan-outs against loops over every weight, SOPs against a step-by-step count on
the recorded spike maps, MACs against hand counts, energies against the constants."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from nets import Mixed, randomize_bn
from PIL import Image
from torch import nn

import snncal
from snncal.app.plots import plot_layer_stats
from snncal.app.tables import stats_table
from snncal.core.evaluate import firing_rates
from snncal.core.neuron import if_scan
from snncal.core.stats import INPUT, EnergyModel, connectivity


def _loop_fanout(conv: nn.Conv2d, shape: tuple[int, int, int]) -> torch.Tensor:
    """How many weights of ``conv`` read each input element ``[C, H, W]``: a loop over every output
    element and every weight."""
    c_in, h, w = shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    per_group_in, per_group_out = c_in // conv.groups, conv.out_channels // conv.groups
    count = [0] * (c_in * h * w)  # a flat list: far faster to increment than a tensor
    for o, y, x, ci, i, j in itertools.product(
        range(conv.out_channels), range(oh), range(ow), range(per_group_in), range(kh), range(kw)
    ):
        r, c = y * sh - ph + i * dh, x * sw - pw + j * dw
        if 0 <= r < h and 0 <= c < w:
            count[((o // per_group_out) * per_group_in + ci) * h * w + r * w + c] += 1
    return torch.tensor(count, dtype=torch.float64).view(shape)


def _windows(n_in: int, n_out: int) -> list[range]:
    """The windows of an adaptive pool along one axis."""
    return [range((i * n_in) // n_out, math.ceil((i + 1) * n_in / n_out)) for i in range(n_out)]


def _fanouts(snn: snncal.SpikingNetwork, x: torch.Tensor) -> list[torch.Tensor]:
    conn = connectivity(snn.graph, x[:1])
    return [conn.fanouts[name] for name in snn.neurons()]


def test_fanout_matches_a_loop_over_every_weight() -> None:
    """Borders, stride, padding, dilation and groups; a linear reads each element out_features times."""
    net = nn.Sequential(
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 4, 3, stride=2, padding=2, dilation=2, groups=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
    ).eval()
    x = torch.rand(4, 4, 7, 7)
    snn = snncal.convert(net, x, T=4, threshold="max", num_images=4)
    first, second = _fanouts(snn, x)
    expected = _loop_fanout(net[2], (6, 7, 7))
    assert torch.equal(first, expected)
    assert expected.min() < expected.max()  # borders and strides do differ
    assert torch.equal(second, torch.full((4, 4, 4), 5.0, dtype=torch.float64))


def test_fanout_through_concat_slices_pads_residual_adds_and_pools() -> None:
    """Mixed with pools kept linear: a spike behind a pool drives the convs of every window holding
    it; one that reaches a neuron through an add (an identity shortcut) counts once per path."""
    net = randomize_bn(Mixed())
    x = torch.rand(4, 3, 8, 8)
    snn = snncal.convert(net, x, T=4, threshold="max", num_images=4, convert_avgpool=False)
    a1, a2, a3, a4, a5 = _fanouts(snn, x)
    c2, c3, c4 = (snn.graph.get_submodule(n) for n in ("c2", "c3", "c4"))
    f3 = _loop_fanout(c3, (16, 8, 8))
    # a1 is read by c2, by the add y + x (into a3), and by c3 as channels 8-15 of cat([y, x])
    assert torch.equal(a1, _loop_fanout(c2, (8, 8, 8)) + 1 + f3[8:])
    assert torch.equal(a2, torch.ones(8, 8, 8, dtype=torch.float64))  # only the add into a3
    assert torch.equal(a3, f3[:8])
    # a4 -> 2x2 pool -> c4, and -> pool -> [::2, ::2] -> channel pad -> add into a5
    f4 = _loop_fanout(c4, (8, 4, 4))
    expected = torch.zeros(8, 8, 8, dtype=torch.float64)
    for c, h, w in itertools.product(range(8), range(8), range(8)):
        q = (h // 2, w // 2)
        expected[c, h, w] = f4[c, q[0], q[1]] + (q[0] % 2 == 0 and q[1] % 2 == 0)
    assert torch.equal(a4, expected)
    assert torch.equal(a5, torch.full((16, 2, 2), 10.0, dtype=torch.float64))  # global pool -> fc


class _Overlapping(nn.Module):
    """Pools whose windows overlap: a 3x3/2 average pool and an adaptive pool of 3 -> 2."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 2)
        self.pool, self.head, self.fc = nn.AvgPool2d(3, 2, 1), nn.AdaptiveAvgPool2d(2), nn.Linear(24, 5)

    def forward(self, x):
        x = self.c2(self.pool(F.relu(self.c1(x))))
        return self.fc(torch.flatten(self.head(F.relu(x)), 1))


def test_fanout_sums_over_overlapping_windows() -> None:
    x = torch.rand(4, 3, 7, 7)
    snn = snncal.convert(_Overlapping().eval(), x, T=4, threshold="max", num_images=4,
                         convert_avgpool=False)
    a1, a2 = _fanouts(snn, x)
    f2 = _loop_fanout(snn.graph.get_submodule("c2"), (4, 4, 4))
    expected = torch.zeros(4, 7, 7, dtype=torch.float64)
    for c, h, w, qh, qw in itertools.product(range(4), range(7), range(7), range(4), range(4)):
        if abs(h - 2 * qh) <= 1 and abs(w - 2 * qw) <= 1:  # window of 3 at stride 2, padding 1
            expected[c, h, w] += f2[c, qh, qw]
    assert torch.equal(a1, expected)
    rows = torch.tensor([sum(h in win for win in _windows(3, 2)) for h in range(3)], dtype=torch.float64)
    assert rows.tolist() == [1, 2, 1]
    assert torch.equal(a2, (5 * rows[:, None] * rows[None, :]).expand(6, 3, 3))


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
    ).eval()


def _snn(T: int = 8) -> tuple[snncal.SpikingNetwork, torch.Tensor]:
    x = torch.rand(12, 3, 8, 8)
    snn = snncal.convert(_net(), x, T=T, threshold="max", num_images=12)
    for n in snn.neurons().values():  # no exact tie with the largest current (one ulp of conv
        n.threshold.mul_(1.01)  # rounding between batch sizes would break either way)
    return snn, x


def test_sops_match_a_step_by_step_count_on_the_spike_maps() -> None:
    """Each consumer with all-ones weights run on the binary spike map of every step and image."""
    snn, x = _snn()
    T, g = 10, snn.graph
    st = snncal.stats(snn, [(x[:5], None), (x[5:], None)], T=T)

    (n1, th1), (n2, th2) = [(n, m.threshold) for n, m in snn.neurons().items()]
    s1, _ = if_scan(g.get_submodule("0")(x), torch.zeros(12, 6, 8, 8), th1, T)  # [T, N, ...] * Vth
    s2, _ = if_scan(g.get_submodule("2")(s1.flatten(0, 1)).view(T, 12, 4, 4, 4),
                    torch.zeros(12, 4, 4, 4), th2, T)
    conv, fc = g.get_submodule("2"), g.get_submodule("5")
    sops1 = sops2 = 0.0
    for t, i in itertools.product(range(T), range(12)):
        spikes1 = s1[t, i : i + 1].ne(0).double()
        spikes2 = s2[t, i : i + 1].ne(0).double().flatten(1)
        sops1 += conv._conv_forward(spikes1, torch.ones_like(conv.weight, dtype=torch.float64), None).sum()
        sops2 += F.linear(spikes2, torch.ones_like(fc.weight, dtype=torch.float64)).sum()

    assert [layer.name for layer in st.layers] == [n1, n2]
    assert st.layers[0].sops_per_image == pytest.approx(float(sops1) / 12, rel=1e-12)
    assert st.layers[1].sops_per_image == pytest.approx(float(sops2) / 12, rel=1e-12)
    assert st.sops_per_image == pytest.approx(float(sops1 + sops2) / 12, rel=1e-12)
    assert st.layers[1].fanout == 5.0
    assert st.layers[1].sops_per_image == pytest.approx(5 * st.layers[1].spikes_per_image, rel=1e-12)
    assert st.layers[0].spikes_per_image == pytest.approx(float(s1.ne(0).sum()) / 12)
    rates = firing_rates(snn, x, T=T)
    assert [layer.rate for layer in st.layers] == pytest.approx([r.rate for r in rates], rel=1e-12)
    assert (st.T, st.images, st.neurons, st.input_sops_per_image) == (T, 12, 384 + 64, 0.0)
    assert 0 < st.rate < 1 and st.sops_per_image > 0


def test_macs_match_a_hand_count() -> None:
    """conv 3->6 3x3 on 8x8, conv 6->4 3x3/2, linear 64->5; the first conv runs once per image."""
    snn, x = _snn()
    st = snncal.stats(snn, x[:2], T=8)
    first, second, fc = 6 * 8 * 8 * 3 * 9, 4 * 4 * 4 * 6 * 9, 5 * 64
    assert st.ann_macs_per_image == first + second + fc == 14144
    assert st.snn_macs_per_image == first and st.snn_mac_layers == {"0": first}
    grouped = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.ReLU(),
                            nn.Conv2d(6, 6, 3, groups=6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 25, 3))
    conn = connectivity(snncal.convert(grouped.eval(), torch.rand(2, 4, 7, 7), T=4, num_images=2).graph,
                        torch.rand(1, 4, 7, 7))
    assert [w.macs for w in conn.layers] == [6 * 49 * 2 * 9, 6 * 25 * 1 * 9, 3 * 150]
    assert [w.outputs for w in conn.layers] == [6 * 49, 6 * 25, 3]
    assert [w.event_driven for w in conn.layers] == [False, True, True]


def test_a_conv_that_reads_a_conv_is_dense_at_every_step() -> None:
    """conv -> IF -> 1x1 conv -> conv (no neuron between) -> IF: the second conv reads currents, not
    spikes, so the engine runs it at every step as MACs; the first conv once per image."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1),
                        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3))
    x = torch.rand(4, 3, 8, 8)
    snn = snncal.convert(net.eval(), x, T=6, threshold="max", num_images=4)
    st = snncal.stats(snn, x, T=6)
    assert st.snn_mac_layers == {"0": 4 * 64 * 27, "3": 6 * 4 * 64 * 36}
    assert st.layers[0].fanout == 4.0  # the 1x1 conv only
    assert st.layers[0].sops_per_image == pytest.approx(4 * st.layers[0].spikes_per_image, rel=1e-12)


def test_poisson_input_spikes_are_counted_in_expectation() -> None:
    snn, x = _snn()
    snn.encoding = "poisson"
    st = snncal.stats(snn, x, T=8)
    fan = connectivity(snn.graph, x[:1], "poisson").fanouts[INPUT]
    scale = x.abs().flatten(1).amax(1).view(-1, 1, 1, 1)
    expected = float((8 * (x.double() / scale) * fan).sum()) / 12
    assert fan.max() == 54 and st.input_sops_per_image == pytest.approx(expected, rel=1e-12)
    assert st.snn_macs_per_image == 0 and st.snn_mac_layers == {}
    assert st.sops_per_image == pytest.approx(expected + sum(layer.sops_per_image for layer in st.layers))


def test_a_silent_network_costs_only_its_dense_layers() -> None:
    snn, x = _snn()
    for n in snn.neurons().values():
        n.threshold.fill_(1e9)
    st = snncal.stats(snn, x, T=8)
    assert st.spikes_per_image == 0 and st.sops_per_image == 0 and st.rate == 0
    assert all(layer.sops_per_image == 0 and layer.fanout > 0 for layer in st.layers)
    assert st.snn_energy_pj == pytest.approx(st.snn_macs_per_image * 4.6)


def test_energy_follows_the_constants() -> None:
    snn, x = _snn()
    default = snncal.stats(snn, x, T=8)
    assert snncal.EnergyModel() == EnergyModel(ac_pj=0.9, mac_pj=4.6, read_pj=5.0, write_pj=5.0)
    assert default.ann_energy_pj == pytest.approx(14144 * 4.6)
    assert default.snn_energy_pj == pytest.approx(default.sops_per_image * 0.9 + 10368 * 4.6)

    model = EnergyModel(ac_pj=1.0, mac_pj=10.0, read_pj=100.0, write_pj=1000.0)
    st = snncal.stats(snn, x, T=8, energy=model)
    sops, outputs = st.sops_per_image, 384 + 64 + 5  # every conv/linear output, per image
    assert sops == default.sops_per_image and st.energy_model == model
    assert st.ann_energy_pj == 14144 * 10.0
    assert st.ann_energy_with_memory_pj == pytest.approx(14144 * (10 + 200) + outputs * 1000)
    assert st.snn_energy_pj == pytest.approx(sops * 1 + 10368 * 10)
    neuron_steps = (384 + 64) * 8  # every potential read and written at every step
    assert st.snn_energy_with_memory_pj == pytest.approx(
        sops * (1 + 100) + neuron_steps * 1100 + 10368 * (10 + 200) + 384 * 1000
    )


def test_to_dict_is_json_and_table_and_plot_are_written(tmp_path) -> None:
    snn, x = _snn()
    st = snncal.stats(snn, [(x[:5], torch.zeros(5)), (x[5:], torch.zeros(7))], T=8, max_images=7)
    assert st.images == 7
    assert st.sops_per_image == pytest.approx(snncal.stats(snn, x[:7], T=8).sops_per_image, rel=1e-12)
    data = json.loads(json.dumps(st.to_dict()))
    assert data["energy_model"]["mac_pj"] == 4.6 and len(data["layers"]) == 2
    assert data["layers"][1]["fanout"] == 5.0 and data["ann_macs_per_image"] == 14144

    table = stats_table(st).splitlines()
    names = list(snn.neurons())
    assert table[2].startswith(f"| {names[0]}") and table[4].startswith("| (all)")
    assert any(line.startswith("| energy, with memory") for line in table)
    path = plot_layer_stats(st, tmp_path / "stats.png", title="test")
    with Image.open(path) as im:
        assert im.size[0] > 400 and im.size[1] > 600
    with pytest.raises(ValueError, match="no images"):
        snncal.stats(snn, [])
