"""NIR export: round trip through a file, a reference NIR interpreter against snn.simulate, the
semantics warning and the errors."""

import subprocess
import sys
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nets import Mixed, Plain, randomize_bn
from torch import nn

import snncal
from snncal.core.export.nir import export_nir
from snncal.core.export.nir_reference import run_nir

T = 8


class Extras(nn.Module):
    """Ops a converted graph holds more rarely: constant normalisation, an unfolded BN, a 3x1 kernel,
    a depthwise conv, a padded average pool, a scalar factor, a residual difference, a spatial mean
    and two heads summed into the output."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1))
        self.bn = nn.BatchNorm2d(3)
        self.c1 = nn.Conv2d(3, 6, (3, 1), padding=(1, 0))
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=3)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.fc = nn.Linear(6 * 4 * 4, 5, bias=False)
        self.fc2 = nn.Linear(6, 5)

    def forward(self, x):
        x = self.bn((x - self.mean) / self.std)
        y = F.relu(self.c1(x))
        z = F.relu(self.dw(y) * 0.5 - y)
        z = self.pool(z)
        return self.fc(torch.flatten(z, 1)) + self.fc2(z.mean((2, 3)))


def _convert(model, x, **kw):
    kw = {"T": T, "reset": "zero", "threshold": "max", **kw}
    return snncal.convert(randomize_bn(model), x, **kw)


def _export(snn, path=None, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = export_nir(snn, path, **kw)
    assert len(caught) == 1, [str(w.message) for w in caught]
    return graph, str(caught[0].message)


# ----------------------------------------------------------------------------- (1) round trip
def test_round_trip_plain_structure_weights_thresholds(tmp_path: Path):
    x = torch.rand(16, 3, 8, 8)
    snn = _convert(Plain(), x)
    path = tmp_path / "plain.nir"
    _export(snn, path)
    g = nir.read(path)
    types = {k: type(n).__name__ for k, n in g.nodes.items()}
    assert types == {
        "input": "Input", "features_0": "Conv2d", "features_2": "IF", "features_2_vth": "Scale",
        "features_3": "Conv2d", "features_5": "IF", "features_5_vth": "Scale", "flatten": "Flatten",
        "fc": "Affine", "output": "Output",
    }
    assert sorted(g.edges) == sorted([
        ("input", "features_0"), ("features_0", "features_2"), ("features_2", "features_2_vth"),
        ("features_2_vth", "features_3"), ("features_3", "features_5"), ("features_5", "features_5_vth"),
        ("features_5_vth", "flatten"), ("flatten", "fc"), ("fc", "output"),
    ])
    mods = dict(snn.graph.named_modules())
    for name in ("features.0", "features.3"):
        node = g.nodes[name.replace(".", "_")]
        np.testing.assert_array_equal(node.weight, mods[name].weight.detach().numpy())
        np.testing.assert_array_equal(node.bias, mods[name].bias.detach().numpy())
        assert node.metadata["snncal_name"] == name
    np.testing.assert_array_equal(g.nodes["fc"].weight, mods["fc"].weight.detach().numpy())
    np.testing.assert_array_equal(g.nodes["fc"].bias, mods["fc"].bias.detach().numpy())
    assert list(g.nodes["input"].output_type["output"]) == [3, 8, 8]
    assert list(g.nodes["output"].input_type["input"]) == [10]
    for name, shape in (("features.2", (8, 8, 8)), ("features.5", (8, 4, 4))):
        neuron, node = mods[name], g.nodes[name.replace(".", "_")]
        vth = np.broadcast_to(neuron.threshold.numpy(), shape)
        np.testing.assert_array_equal(node.v_threshold, vth)  # per channel, broadcast to the layer
        np.testing.assert_array_equal(g.nodes[name.replace(".", "_") + "_vth"].scale, vth)
        np.testing.assert_array_equal(node.r, np.ones(shape))
        np.testing.assert_array_equal(node.v_reset, np.zeros(shape))
        assert node.metadata["reset"] == "zero"
        assert node.metadata["T"] == T
        np.testing.assert_array_equal(node.metadata["v0"], np.zeros(shape))
        assert ">=" in node.metadata["firing_rule"]
    assert g.metadata["T"] == T and "constant current" in g.metadata["input_encoding"]


def test_round_trip_mixed_residual_concat_slice_pad(tmp_path: Path):
    x = torch.rand(16, 3, 8, 8)
    snn = _convert(Mixed(), x)
    path = tmp_path / "mixed.nir"
    _export(snn, path)
    g = nir.read(path)
    into = {k: sorted(src for src, dst in g.edges if dst == k) for k in g.nodes}
    assert len(set(g.edges)) == len(g.edges)
    assert into["relu_2"] == ["relu_1_vth", "relu_vth"]  # y + x: both edges summed into the neuron
    assert into["relu_4"] == ["c4", "pad"]  # the option-A shortcut
    assert into["c3"] == ["cat_0", "cat_1"]  # torch.cat([y, x], 1)
    assert into["cat_0"] == ["relu_2_vth"] and into["cat_1"] == ["relu_vth"]
    eye = np.eye(8, dtype=np.float32)[:, :, None, None]
    np.testing.assert_array_equal(g.nodes["cat_0"].weight[:8], eye)
    np.testing.assert_array_equal(g.nodes["cat_0"].weight[8:], 0 * eye)
    np.testing.assert_array_equal(g.nodes["cat_1"].weight[8:], eye)
    np.testing.assert_array_equal(g.nodes["cat_1"].weight[:8], 0 * eye)
    sl = g.nodes["getitem"]  # z[:, :, ::2, ::2]: a 1x1 identity of stride 2
    np.testing.assert_array_equal(sl.weight, eye)
    assert list(sl.stride) == [2, 2]
    pad = g.nodes["pad"]  # F.pad on channels 8 -> 16: identity into channels 4..11
    assert pad.weight.shape == (16, 8, 1, 1)
    np.testing.assert_array_equal(pad.weight[4:12], eye)
    assert pad.weight[:4].sum() == 0 and pad.weight[12:].sum() == 0
    pool = g.nodes["pool"]  # the average pool, converted to a depthwise conv, written dense
    assert pool.metadata["snncal_groups"] == 8
    assert pool.weight.shape == (8, 8, 2, 2)
    np.testing.assert_allclose(pool.weight[np.arange(8), np.arange(8)], 0.25)
    assert np.count_nonzero(pool.weight) == 8 * 4
    assert isinstance(g.nodes["head_if"], nir.IF)  # the adaptive pool's neuron
    np.testing.assert_array_equal(g.nodes["c3"].weight, snn.graph.c3.weight.detach().numpy())


# ------------------------------------------------------------------ (2) the NIR graph runs as the SNN
@pytest.mark.parametrize(
    ("net", "convert_avgpool"),
    [(Mixed, True), (Mixed, False), (Plain, True), (Extras, False), (Extras, True)],
)
def test_reference_interpreter_reproduces_simulate(tmp_path: Path, net, convert_avgpool):
    x = torch.rand(16, 3, 8, 8)
    snn = _convert(net(), x, convert_avgpool=convert_avgpool)
    path = tmp_path / "net.nir"
    _export(snn, path)
    g = nir.read(path)
    types = {type(n).__name__ for n in g.nodes.values()}
    if not convert_avgpool and net is Mixed:
        assert "AvgPool2d" in types  # kept linear: NIR pools
    if not convert_avgpool and net is Extras:
        assert "SumPool2d" in types  # padded pool: sum then scale
    if net is Extras:
        c1, mods = g.nodes["c1"], dict(snn.graph.named_modules())
        assert c1.weight.shape == (6, 3, 3, 3) and list(c1.padding) == [1, 1]  # 3x1 written 3x3
        np.testing.assert_array_equal(c1.weight[..., 1:2], mods["c1"].weight.detach().numpy())
        assert not c1.weight[..., [0, 2]].any()
        assert g.nodes["dw"].metadata["snncal_groups"] == 3 and g.nodes["dw"].weight.shape == (6, 6, 3, 3)
        assert sorted(src for src, dst in g.edges if dst == "output") == ["fc", "fc2"]
    with torch.no_grad():
        expected = snn.simulate(x, T)
        got = run_nir(g, x, T)
    assert expected.abs().max() > 0
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_subtract_and_v0_need_the_metadata(tmp_path: Path):
    """A consumer following NIR's IF (reset to zero, v = 0 at the start) gets a different output; one
    that follows the metadata reproduces snncal."""
    x = torch.rand(16, 3, 8, 8)
    snn = _convert(Plain(), x, reset="subtract", threshold="mmse", method="potential")
    assert any(n.v0.ne(0).any() for n in snn.neurons().values())
    _export(snn, tmp_path / "sub.nir")
    g = nir.read(tmp_path / "sub.nir")
    with torch.no_grad():
        expected = snn.simulate(x, T)
        as_nir = run_nir(g, x, T)
        as_snncal = run_nir(g, x, T, snncal_semantics=True)
    torch.testing.assert_close(as_snncal, expected, atol=1e-5, rtol=1e-5)
    assert (as_nir - expected).abs().max() > 1e-2


# ----------------------------------------------------------------------------- (3) the warning
def test_warning_names_reset_by_subtraction_and_initial_potentials():
    x = torch.rand(16, 3, 8, 8)
    snn = _convert(Plain(), x, reset="subtract")
    _, message = _export(snn)
    assert "2 of 2 IF neurons reset by subtraction" in message
    assert "v_reset = 0" in message
    assert "initial potentials" not in message
    snn.neurons()["features.2"].v0 = torch.full((8, 8, 8), 0.1)
    graph, message = _export(snn)
    assert "1 IF neurons start from non-zero initial potentials" in message
    np.testing.assert_allclose(graph.nodes["features_2"].metadata["v0"], 0.1)
    assert graph.nodes["features_2"].metadata["reset"] == "subtract"


def test_warning_for_reset_to_zero_names_only_the_firing_rule():
    snn = _convert(Plain(), torch.rand(16, 3, 8, 8))
    _, message = _export(snn)
    assert "subtraction" not in message and "initial potentials" not in message
    assert "v >= v_threshold" in message and "T = 8" in message


# ------------------------------------------------------------------ (4) errors, input shape, laziness
class CatOnHeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 8, 2)

    def forward(self, x):
        y = F.relu(self.c(x))
        return self.fc(torch.cat([y, y], 2).flatten(1))


class Transposed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        return self.fc(F.relu(self.c(x)).transpose(2, 3).flatten(1))


def test_unsupported_ops_raise_one_clear_error():
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(snncal.ConversionError, match=r"node 'cat' \(function cat\).*dim 1"):
        export_nir(_convert(CatOnHeight(), x))
    with pytest.raises(ValueError, match=r"node 'transpose' \(method \.transpose\(\)\).*NIR export handles"):
        export_nir(_convert(Transposed(), x))


def test_input_shape_from_the_graph_or_the_argument():
    x = torch.rand(4, 3, 8, 8)
    snn = _convert(Plain(), x)
    for node in snn.graph.graph.nodes:
        node.meta.pop("tensor_meta", None)
    with pytest.raises(ValueError, match="pass input_shape"):
        export_nir(snn)
    graph, _ = _export(snn, input_shape=(3, 8, 8))
    assert list(graph.nodes["features_5"].v_threshold.shape) == [8, 4, 4]


def test_import_snncal_does_not_need_nir():
    code = "import sys; sys.modules['nir'] = None; import snncal; print(callable(snncal.export_nir))"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "True"
    assert "export_nir" in snncal.__all__
