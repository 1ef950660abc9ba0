"""SNN files: save -> load gives the same network, bit for bit, for any model convert accepts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from nets import Mixed, randomize_bn
from safetensors.torch import save_file
from torch import nn

import snncal
import snncal.ann.models as zoo
from snncal.core.export import FORMAT, load, read_meta, save
from snncal.core.export.graph_data import FUNCTIONS, METHODS, MODULES, value_from_json, value_to_json
from snncal.core.files import FileFormatError, read_tensors, write_tensors
from snncal.core.graph import ops as op_table

ROOT = Path(__file__).resolve().parents[1]


def _assert_same_network(loaded: snncal.SpikingNetwork, snn: snncal.SpikingNetwork, x: torch.Tensor) -> None:
    assert (loaded.T, loaded.encoding, loaded.max_batch) == (snn.T, snn.encoding, snn.max_batch)
    assert snn.state_dict().keys() == loaded.state_dict().keys()
    for key, value in snn.state_dict().items():
        assert value.dtype == loaded.state_dict()[key].dtype, key
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert torch.equal(loaded.simulate(x, every_step=True), snn.simulate(x, every_step=True))
    assert torch.equal(loaded.ann(x), snn.ann(x))
    assert loaded.calibration == snn.calibration
    assert list(loaded.neurons()) == list(snn.neurons())
    for name, neuron in snn.neurons().items():
        other = loaded.neurons()[name]
        assert (other.reset, other.shift, other.ann_max) == (neuron.reset, neuron.shift, neuron.ann_max)


@pytest.mark.parametrize(
    ("arch", "options"),
    [
        ("resnet20_he", {"method": "advanced", "per_channel": True, "weight_iters": 5}),
        ("cnn_small", {"method": "light", "threshold": "max", "reset": "zero"}),
        ("vgg16_bn", {"method": "light"}),  # converted pools inside a Sequential: 'features.6_if'
    ],
)
def test_zoo_round_trip_gives_identical_outputs(tmp_path, arch, options) -> None:
    width = 0.125 if arch == "vgg16_bn" else 0.25  # VGG-16's 13 layers: the smallest width suffices
    model = randomize_bn(zoo.create(arch, 5, width, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2]))
    x = torch.rand(24, 3, 32, 32)
    cfg = snncal.ConvertConfig(T=8, num_images=24, batch_size=12, **options)
    snn = snncal.convert(model, x, cfg)
    path = snncal.save(snn, tmp_path / "snn", meta={"config": cfg.to_dict(), "note": "hi"})
    assert path.name == "snn.safetensors" and (tmp_path / "snn.json").exists()

    loaded = snncal.load(tmp_path / "snn")
    _assert_same_network(loaded, snn, x)
    assert not loaded.training

    side = json.loads((tmp_path / "snn.json").read_text())
    assert side == read_meta(tmp_path / "snn.safetensors")
    assert side["format"] == FORMAT == "snncal-snn/2"
    assert side["snn"] == {"T": 8, "encoding": "direct", "max_batch": cfg.max_batch, "amp": "off"}
    assert side["meta"] == {"config": cfg.to_dict(), "note": "hi"}
    # the zoo's Normalize is traced into buffers read by get_attr, not a module of the graph
    assert set(side["graph"]["attributes"]) == {"normalize.mean", "normalize.std"}
    types = {m["type"] for m in side["graph"]["modules"].values()}
    assert types <= {"Conv2d", "Linear", "Identity", "IFNeuron"}


class OwnNet(nn.Module):
    """A user's model: functional ReLUs, a residual +, an inline F.pad shortcut, slicing."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c3 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = F.relu(self.c2(x) + x)
        s = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 2, 2))
        x = F.relu(self.c3(x) + s)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_own_model_loads_bit_identical_in_a_fresh_process(tmp_path) -> None:
    x = torch.rand(6, 3, 8, 8)
    snn = snncal.convert(OwnNet().eval(), x, T=6, method="advanced", per_channel=True, weight_iters=3)
    neuron = snn.neurons()["relu"]
    assert neuron.threshold.shape == (4, 1, 1) and neuron.v0.shape == (4, 8, 8)  # not a fresh module's
    snncal.save(snn, tmp_path / "own", meta={"input_shape": [3, 8, 8]})
    save_file({"x": x, "y": snn.simulate(x, every_step=True)}, str(tmp_path / "io.safetensors"))
    script = (
        "import sys, torch, snncal\n"
        "from safetensors.torch import load_file\n"
        "torch.set_num_threads(1)\n"
        "io = load_file('io.safetensors')\n"
        "snn = snncal.load('own')\n"
        "assert not any('test_export' in m for m in sys.modules)\n"
        "print(torch.equal(snn.simulate(io['x'], every_step=True), io['y']), len(snn.neurons()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", str(len(snn.neurons()))]


def test_mixed_model_round_trip(tmp_path) -> None:
    """BN folding, concat, slicing with steps, pad, pools, view(size(0), -1): all travel as data."""
    model = randomize_bn(Mixed())
    x = torch.rand(8, 3, 16, 16)
    snn = snncal.convert(model, x, T=4, method="light")
    save(snn, tmp_path / "mixed")
    _assert_same_network(load(tmp_path / "mixed"), snn, x)
    ops = {(n["op"], n["target"]) for n in read_meta(tmp_path / "mixed")["graph"]["nodes"]}
    assert {("call_function", "torch.cat"), ("call_function", "operator.getitem"),
            ("call_function", "torch.nn.functional.pad"), ("call_method", "view")} <= ops


def test_tables_cover_what_a_converted_graph_may_hold() -> None:
    assert set(FUNCTIONS.values()) == set(op_table.FUNCTIONS)
    assert set(op_table.METHODS) == METHODS
    assert {spec.cls for spec in MODULES.values()} == set(op_table.MODULES) | {snncal.IFNeuron}
    assert all(name == spec.cls.__name__ for name, spec in MODULES.items())


@pytest.mark.parametrize(
    "value",
    [1, -2.5, True, None, "s", (1, 2), [1, (2, [3])], slice(None, 4, 2), Ellipsis, torch.float16,
     {"dim": 1, "keep": (True,)}, float("inf"), -float("inf")],
)
def test_constants_round_trip_through_json(value) -> None:
    data = json.loads(json.dumps(value_to_json(value, "test")))
    back = value_from_json(data, {}, "test")
    assert back == value and type(back) is type(value)


def test_nan_and_bad_constants() -> None:
    assert math.isnan(value_from_json(json.loads(json.dumps(value_to_json(float("nan"), "t"))), {}, "t"))
    with pytest.raises(ValueError, match="cannot save the constant"):
        value_to_json(object(), "node 'x'")
    for bad in ({"float": "1e5"}, {"dtype": "nn"}, {"eval": "1"}, {"node": "y"}, {"slice": [1]}):
        with pytest.raises(FileFormatError):
            value_from_json(bad, {}, "node 'x'")


def test_save_refuses_what_a_file_cannot_hold(tmp_path) -> None:
    x = torch.rand(4, 3, 8, 8)
    snn = snncal.convert(OwnNet().eval(), x, T=2, method="none")
    with pytest.raises(ValueError, match="JSON-ready"):
        save(snn, tmp_path / "a", meta={"x": object()})
    snn.graph.fc = nn.LSTM(8, 3)
    with pytest.raises(ValueError, match="module 'fc' is a LSTM, which an SNN file cannot hold"):
        save(snn, tmp_path / "b")
    assert not (tmp_path / "a.safetensors").exists() and not (tmp_path / "b.safetensors").exists()


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    x = torch.rand(4, 3, 8, 8)
    path = tmp_path_factory.mktemp("snn") / "own"
    save(snncal.convert(OwnNet().eval(), x, T=2, method="light"), path)
    return path


def _edited(saved: Path, tmp_path: Path, edit) -> Path:
    """A copy of the saved file after ``edit(meta, tensors)``, with a valid digest."""
    tensors, meta = read_tensors(saved)
    edit(meta, tensors)
    return write_tensors(tmp_path / "edited", tensors, meta)


def _node(meta: dict, name: str) -> dict:
    return next(n for n in meta["graph"]["nodes"] if n["name"] == name)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m, t: m.update(format="snncal-snn/3"), "format snncal-snn/3, newer than this snncal reads"),
        (lambda m, t: m.update(format="snncal-snn/1"), "old format snncal-snn/1"),
        (lambda m, t: m.update(format="snncal-checkpoint/1"), "is not an SNN checkpoint"),
        (lambda m, t: _node(m, "c1").update(op="call_everything"), "node 'c1' has unknown op"),
        (lambda m, t: _node(m, "add").update(target="os.system"), "calls unknown function 'os.sys"),
        (lambda m, t: _node(m, "flatten").update(target="numpy"), "node 'flatten' calls unknown method 'num"),
        (lambda m, t: m["graph"]["modules"]["c2"].update(type="LSTM"), "module 'c2' has unknown type 'LSTM'"),
        (lambda m, t: _node(m, "add").update(args=[{"node": "c2"}, {"node": "ghost"}]),
         "node 'add': refers to node 'ghost', which is not defined before it"),
        (lambda m, t: t.update({"graph.c2.weight": torch.zeros(4, 4, 3, 2)}),
         r"module 'c2' \(Conv2d\): tensor 'weight' has shape \[4, 4, 3, 2\], but the module needs "
         r"\[4, 4, 3, 3\]"),
        (lambda m, t: t.update({"graph.relu.threshold": torch.ones(2)}),
         r"tensor 'threshold' has shape \[2\], but the module needs \[4, 1, 1\]"),
        (lambda m, t: t.pop("graph.c1.bias"), r"tensors missing \['bias'\]"),
        (lambda m, t: t.update({"graph.extra": torch.ones(1)}), "belong to no module or attribute"),
        (lambda m, t: m["graph"]["modules"].update({"c1'); import os; ('": m["graph"]["modules"]["c1"]}),
         "is not a dotted Python name"),
        (lambda m, t: _node(m, "c1").update(name="c1\nimport os"), "node 1 is malformed or misnamed"),
        (lambda m, t: m["snn"].update(T=0), "T = 0, not a positive integer"),
        (lambda m, t: m["snn"].update(encoding="burst"), "encoding 'burst' is not one of"),
        (lambda m, t: m.update(calibration={"method": 3}), "calibration report: method = 3, not a str"),
    ],
)
def test_load_names_the_file_and_the_problem(saved, tmp_path, edit, message) -> None:
    path = _edited(saved, tmp_path, edit)
    with pytest.raises(FileFormatError, match=message) as err:
        load(path)
    assert str(path) in str(err.value)


def test_load_rejects_other_files(saved, tmp_path) -> None:
    from snncal.ann.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ann", zoo.create("cnn_small", 5, 0.25), {"arch": "cnn_small"})
    with pytest.raises(FileFormatError, match="not an SNN checkpoint"):
        load(tmp_path / "ann")
    with pytest.raises(FileFormatError, match="not an SNN checkpoint"):
        read_meta(tmp_path / "ann")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing")
    data = Path(f"{saved}.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 10])
    with pytest.raises(FileFormatError, match=r"cut\.safetensors: corrupt file"):
        load(tmp_path / "cut")
