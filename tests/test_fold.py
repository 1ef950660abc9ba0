"""Threshold folding: the folded network (every threshold 1, unit spikes) simulates as the original,
on nets with residual adds, concatenation, padding, slicing and a linear head, and its NIR export
has no Scale nodes."""

import warnings

import nir
import numpy as np
import pytest
import torch
from nets import Mixed, OptionAResNet, Plain, randomize_bn
from test_nir import Extras, run_nir

import snncal
from snncal.core.engine import simulate
from snncal.core.export.fold import fold_thresholds, is_folded
from snncal.core.export.nir import export_nir

T = 8


def _counts(snn, x):
    counts = {}
    simulate(snn.graph, x, T, spike_counts=counts)
    return counts


@pytest.mark.parametrize(
    ("net", "kw"),
    [
        (Plain, {"method": "opt"}),  # a scalar threshold and the threshold shift (into a bias)
        (Mixed, {"method": "light+"}),  # per channel, time-dependent bias, v0; residual, cat, pad
        (Mixed, {"threshold": "mmse", "method": "potential"}),
        (OptionAResNet, {}),  # identity shortcuts into residual adds: 1x1 depthwise carriers
        (Extras, {}),  # unfolded BN, scalar factor, residual difference, two heads
    ],
)
def test_folded_network_equals_the_original(net, kw):
    x = torch.rand(16, 3, 8, 8)
    snn = snncal.convert(randomize_bn(net()), x, **{"T": T, **kw})
    before = {k: v.clone() for k, v in snn.state_dict().items()}
    folded = fold_thresholds(snn, (3, 8, 8))
    assert is_folded(folded) and not is_folded(snn)
    assert all(torch.equal(v, snn.state_dict()[k]) for k, v in before.items())  # original untouched
    assert not any(n.shift for n in folded.neurons().values())
    xt = torch.rand(24, 3, 8, 8)
    with torch.no_grad():
        expected, got = snn.simulate(xt), folded.simulate(xt)
    assert expected.abs().max() > 0
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    a, b = _counts(snn, xt), _counts(folded, xt)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same spikes, neuron by neuron


def test_residual_carrier_is_one_depthwise_conv_per_mismatched_shortcut():
    x = torch.rand(16, 3, 8, 8)
    snn = snncal.convert(randomize_bn(OptionAResNet()), x, T=T)
    folded = fold_thresholds(snn, (3, 8, 8))
    carriers = {n: m for n, m in folded.graph.named_children() if n.endswith("_fold")}
    assert len(carriers) == 2  # block1's identity shortcut and block2's padded one
    for m in carriers.values():
        assert isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels and m.kernel_size == (1, 1)


def test_folded_export_has_unit_thresholds_and_no_scale_nodes(tmp_path):
    x = torch.rand(16, 3, 8, 8)
    snn = snncal.convert(randomize_bn(Mixed()), x, T=T, method="potential", threshold="mmse")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_nir(snn, tmp_path / "f.nir", fold=True)
        export_nir(snn, tmp_path / "p.nir", target="spikingjelly")
    portable = {"Input", "Conv2d", "Affine", "Flatten", "IF", "Output"}
    for name, allowed in (("f.nir", None), ("p.nir", portable)):
        g = nir.read(tmp_path / name)
        types = {type(n).__name__ for n in g.nodes.values()}
        assert "Scale" not in types
        assert allowed is None or types <= allowed, types
        for n in g.nodes.values():
            if isinstance(n, nir.IF):
                assert (n.v_threshold == 1).all()
        with torch.no_grad():
            torch.testing.assert_close(run_nir(g, x, T, snncal_semantics=True), snn.simulate(x),
                                       atol=1e-5, rtol=1e-5)


def test_unknown_target_is_refused():
    snn = snncal.convert(Plain().eval(), torch.rand(4, 3, 8, 8), T=T)
    with pytest.raises(ValueError, match=r"unknown NIR export target 'loihi'.*sinabs"):
        export_nir(snn, target="loihi")


def test_static_fold_turns_the_step_bias_into_a_kick_and_a_constant_current():
    x = torch.rand(16, 3, 8, 8)
    snn = snncal.convert(randomize_bn(Mixed()), x, T=T, method="light+")
    stepped = [n for n in snn.neurons().values() if n.step_bias is not None]
    assert stepped
    folded = fold_thresholds(snn, (3, 8, 8), static=True)
    assert all(n.step_bias is None for n in folded.neurons().values())
    t = np.arange(1, T + 1) - T
    for n in stepped:  # the reference: per channel, lstsq of the running sum on t - T, through C_T
        charge = n.bias_at(0, T)[:, 0].flatten(1).double().numpy().cumsum(0)  # [T, C]
        c = np.array([np.linalg.lstsq(t[:, None], q - q[-1], rcond=None)[0][0] for q in charge.T])
        shape = (T, *n.step_bias.shape[1:])
        n.v0 = n.v0 + torch.tensor(charge[-1] - c * T, dtype=torch.float32).view(shape[1:])
        n.step_bias = torch.tensor(c, dtype=torch.float32).view(shape[1:]).expand(shape).clone()
    xt = torch.rand(24, 3, 8, 8)
    with torch.no_grad():
        expected, got = snn.simulate(xt), folded.simulate(xt)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
