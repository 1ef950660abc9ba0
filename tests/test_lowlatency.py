"""Low-latency calibration steps (issue #14): each one's defining property on tiny nets."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from nets import Mixed, OneLayer, randomize_bn
from torch import nn

import snncal
import snncal.ann.models as zoo
from snncal.core.calibrate import METHODS, STEPS, Method, Step
from snncal.core.calibrate.balanced import GRID
from snncal.core.engine import ChunkSpec, _Chunk, simulate
from snncal.core.neuron import IFNeuron, clip_floor, if_scan
from snncal.core.neuron import compiled as neuron_mod


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 5, 3, padding=1)
        self.fc = nn.Linear(5 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(F.relu(self.c2(F.relu(self.c1(x)))).flatten(1))


class Residual(nn.Module):
    """Stem + two residual blocks (conv-relu-conv + identity, relu) + linear head."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(4))
        self.fc = nn.Linear(width, 5)

    def forward(self, x):
        x = F.relu(self.stem(x))
        for a, b in zip(self.convs[::2], self.convs[1::2]):
            x = F.relu(b(F.relu(a(x))) + x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _record(snn: snncal.SpikingNetwork, x: torch.Tensor, name: str) -> dict[str, torch.Tensor]:
    """Input current and output ``[T, N, ...]`` of neuron ``name`` in a full simulation."""
    rec = {}

    class Rec(_Chunk):
        def _neuron(self, target, inp, temporal):
            out = super()._neuron(target, inp, temporal)
            if target == name:
                steps = (self.steps, -1)
                expanded = inp.expand(self.steps, *inp.shape)
                rec["current"] = inp.view(*steps, *inp.shape[1:]) if temporal else expanded
                rec["out"] = out.view(*steps, *out.shape[1:])
            return out

    Rec(snn.graph, ChunkSpec(snn.T, snn.T), {}, {}).run(x)
    return rec


# -- the neuron's time-dependent bias ------------------------------------------------------------
def test_step_bias_adds_one_current_per_step_and_repeats_the_last():
    neuron = IFNeuron(torch.tensor([1.0, 2.0]))
    neuron.step_bias = torch.tensor([[0.5, 0.0], [0.0, 1.0], [1.0, 0.0]])  # 3 steps, 2 channels
    x = torch.zeros(1, 2)
    out, v = neuron.scan(x, neuron.init_state(x), 5, 5)
    # channel 0 gets 0.5, 0, 1, 1, 1: v = .5, .5, 1.5 -> spike, .5 + 1 -> spike, 0.5 + 1 -> spike
    assert out[:, 0, 0].tolist() == [0, 0, 1, 1, 1]
    # channel 1 gets 0, 1, 0, 0, 0 (threshold 2): never reaches it
    assert out[:, 0, 1].tolist() == [0, 0, 0, 0, 0] and v[0].tolist() == [0.5, 1.0]
    # chunks of steps resume at their offset
    a, va = neuron.scan(x, neuron.init_state(x), 2, 5)
    b, vb = neuron.scan(x, va, 3, 5, t0=2)
    assert torch.equal(torch.cat([a, b]), out) and torch.equal(vb, v)


def test_step_bias_survives_chunked_simulation_and_save_load(tmp_path):
    model = randomize_bn(zoo.create("cnn_small", 5, 0.25, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2]))
    x = torch.rand(16, 3, 32, 32)
    cfg = snncal.ConvertConfig(T=6, method="tbias", num_images=16)
    snn = snncal.convert(model, x, cfg)
    assert all(n.step_bias.shape[0] == 6 for n in snn.neurons().values())
    whole = simulate(snn.graph, x, 6, max_batch=16 * 6)
    chunked = simulate(snn.graph, x, 6, max_batch=4)  # one image at a time, four steps per chunk
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    # the state_dict holds the bias only where it was set: the golden networks keep their keys
    keys = [k for k in snn.state_dict() if k.endswith(".step_bias")]
    assert len(keys) == len(snn.neurons())
    assert not any(k.endswith(".step_bias") for k in snncal.to_spiking(snncal.prepare(model, x)).state_dict())
    snncal.save(snn, tmp_path / "snn")
    loaded = snncal.load(tmp_path / "snn")
    for key in keys:
        assert torch.equal(loaded.state_dict()[key], snn.state_dict()[key])
    assert torch.equal(loaded(x), snn(x))


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_compiled_scan_with_step_bias_and_residual_equals_eager_ops(monkeypatch, reset):
    g = torch.Generator().manual_seed(0)
    shape = (8, 16, 32, 32)  # 131072 elements >= FUSE_MIN_NUMEL
    x, r = torch.randn(shape, generator=g), torch.randn((5, *shape), generator=g)
    bias = torch.randn(5, 1, 16, 1, 1, generator=g) * 0.1
    th = torch.rand(16, 1, 1, generator=g) + 0.5
    monkeypatch.setenv("SNNCAL_COMPILE", "0")
    eager, v_eager = if_scan(x, torch.zeros(shape), th, 5, reset, bias=bias, residual=r)
    monkeypatch.setenv("SNNCAL_COMPILE", "1")
    fused, v_fused = if_scan(x, torch.zeros(shape), th, 5, reset, bias=bias, residual=r)
    assert neuron_mod._compiled["scan"] is not None
    assert torch.equal(fused, eager) and torch.equal(v_fused, v_eager)


# -- time-dependent bias correction --------------------------------------------------------------
def test_time_bias_zeroes_the_running_rate_error_at_every_step():
    model = OneLayer()
    x = torch.rand(256, 3, 8, 8)
    target = F.relu(snncal.prepare(model, x).conv(x))
    errors = {}
    for method in ("bias", "tbias"):
        snn = snncal.convert(model, x, T=8, method=method, num_images=256)
        out = _record(snn, x, "relu")["out"]
        running = out.cumsum(0) / torch.arange(1, 9).view(-1, 1, 1, 1, 1)
        errors[method] = (running - target).mean((1, 3, 4))  # [T, C]: channel mean per step
    # bias correction zeroes the error at T only; the step bias at every step
    assert errors["bias"][-1].abs().max() < 0.02 < errors["bias"][:4].abs().max()
    assert errors["tbias"].abs().max() < errors["bias"][:4].abs().max() / 5
    assert errors["tbias"].abs().max() < 0.01


# -- block reconstruction ------------------------------------------------------------------------
def _blocks(model: nn.Module, x: torch.Tensor) -> dict[str, list[str]]:
    found = {}
    STEPS["record_block"] = Step(lambda layer, cfg: found.__setitem__(
        layer.name, [inner.name for inner in layer.block()]), spikes=True)
    try:
        snncal.convert(model, x, T=4, method="record_block", num_images=len(x))
    finally:
        STEPS.pop("record_block")
    return found


def test_a_block_reaches_back_to_the_values_the_sweep_still_holds():
    x = torch.rand(8, 3, 8, 8)
    assert _blocks(Residual(), x) == {
        "relu": [],
        "relu_1": ["relu"],  # the stem's input, the image, is always held
        "relu_2": ["relu", "relu_1"],
        "relu_3": [],  # the block's input relu_2 is held for the shortcut, its inputs are not
        "relu_4": ["relu_3"],
        "adaptive_avg_pool2d_if": [],
    }
    assert _blocks(Chain(), x) == {"relu": [], "relu_1": ["relu"]}


def _block_model_loss(snn: snncal.SpikingNetwork, x: torch.Tensor, target: torch.Tensor) -> float:
    """The first block's output error with every neuron as its ``ClipFloor`` (the model both
    calibrations fit): stem -> relu -> a -> relu_1 -> b (+ relu) -> relu_2."""
    g, n = snn.graph, snn.neurons()

    def rate(name, current):
        return clip_floor(current, n[name].threshold, snn.T, n[name].v0)

    r0 = rate("relu", g.stem(x))
    a, b = g.get_submodule("convs.0"), g.get_submodule("convs.1")
    out = rate("relu_2", b(rate("relu_1", a(r0))) + r0)
    return float(((out - target) ** 2).flatten(1).sum(1).mean().detach())


def test_block_reconstruction_lowers_the_block_output_error_below_layer_wise_weight_calibration():
    model = Residual(width=6)
    x = torch.rand(128, 3, 8, 8)
    with torch.no_grad():
        r0 = F.relu(model.stem(x))
        target = F.relu(model.convs[1](F.relu(model.convs[0](r0))) + r0)
    loss, report = {}, {}
    for method in ("weight", "block"):
        snn = snncal.convert(model, x, T=4, method=method, weight_iters=200, weight_lr=3e-3, num_images=128)
        loss[method] = _block_model_loss(snn, x, target)
        report[method] = {layer.name: layer for layer in snn.calibration.layers}
    block = report["block"]["relu_2"]
    assert block.weight_loss[0] > block.weight_loss[1] == pytest.approx(loss["block"], rel=1e-4)
    assert loss["block"] < 0.9 * loss["weight"]
    # and in the simulation, which the model leaves the temporal error out of
    assert block.mse_after < 0.9 * report["weight"]["relu_2"].mse_after


def test_weight_calibration_through_the_spike_train_starts_from_the_simulated_error(monkeypatch):
    """With each image's temporal error added, the model's loss before fitting is the simulated
    rate's squared error itself (summed over a layer's elements, averaged over images)."""
    simulated = {}
    monkeypatch.setitem(STEPS, "probe", Step(lambda layer, cfg: simulated.__setitem__(
        layer.name, layer.error_stats().sq_sum / layer.error_stats().count), spikes=True))
    monkeypatch.setitem(METHODS, "probed", Method("probed", ("threshold", "probe", "weight_spikes")))
    snn = snncal.convert(randomize_bn(Mixed()), torch.rand(64, 3, 16, 16), T=8, method="probed",
                         weight_iters=10, num_images=64)
    fitted = [layer for layer in snn.calibration.layers if not math.isnan(layer.weight_loss[0])]
    assert len(fitted) == len(snn.neurons()) - 1  # relu_2's segment is an add: nothing to fit
    for layer in fitted:
        assert layer.weight_loss[0] == pytest.approx(simulated[layer.name], rel=1e-5)


def test_weight_calibration_fits_the_shifted_neuron_it_then_fires_with(monkeypatch):
    """Under ``shift+weight`` the model fitted is the neuron with its threshold shift: on the first
    layer, fed the image as a constant current, the model's loss before fitting is the simulated
    rate's squared error itself (and not that of a neuron without the shift)."""
    simulated = {}
    monkeypatch.setitem(STEPS, "probe", Step(lambda layer, cfg: simulated.__setitem__(
        layer.name, layer.error_stats().sq_sum / layer.error_stats().count), spikes=True))
    monkeypatch.setitem(METHODS, "probed", Method("probed", ("threshold", "shift", "probe", "weight")))
    model = randomize_bn(Mixed())
    x = torch.rand(64, 3, 16, 16)
    snn = snncal.convert(model, x, T=8, method="probed", weight_iters=10, num_images=64)
    first = snn.calibration.layers[0]
    assert snn.neurons()[first.name].shift
    assert first.weight_loss[0] == pytest.approx(simulated[first.name], rel=1e-3)
    unshifted = snncal.convert(model, x, T=8, method="weight", weight_iters=10, num_images=64)
    assert unshifted.calibration.layers[0].weight_loss[0] != pytest.approx(first.weight_loss[0], rel=1e-2)


# -- locally balanced thresholds -----------------------------------------------------------------
def test_balanced_thresholds_equal_a_brute_force_search_on_the_recorded_snn_currents():
    model = Chain()
    x = torch.rand(64, 3, 8, 8)
    T = 8
    base = snncal.convert(model, x, T=T, method="none", num_images=64)
    fast = snncal.convert(model, x, T=T, method="balanced", num_images=64)
    ann = snncal.prepare(model, x)
    targets = {"relu": F.relu(ann.c1(x)), "relu_1": F.relu(ann.c2(F.relu(ann.c1(x))))}
    slow = base  # thresholds set layer by layer, each on the currents of the ones set before
    for name in ("relu", "relu_1"):
        neuron = slow.neurons()[name]
        current = _record(slow, x, name)["current"]  # [T, N, C, H, W]
        start = neuron.threshold.clone()
        best = torch.full_like(start, float("inf")), start.clone()
        for f in GRID:
            th = start * f
            out, _ = if_scan(current, torch.zeros_like(current[0]), th, T)
            err = ((out.mean(0) - targets[name]) ** 2).sum((0, 2, 3)).view_as(start)
            better = err < best[0]
            best = torch.where(better, err, best[0]), torch.where(better, th, best[1])
        neuron.threshold = best[1]
        torch.testing.assert_close(fast.neurons()[name].threshold, neuron.threshold)
    none = snncal.convert(model, x, T=T, method="none", num_images=64)
    assert not torch.equal(fast.neurons()["relu_1"].threshold, none.neurons()["relu_1"].threshold)


# -- methods -------------------------------------------------------------------------------------
def test_the_low_latency_methods_are_registered_and_improve_on_their_baselines():
    model = randomize_bn(Mixed())
    x = torch.rand(64, 3, 16, 16)
    ann = model(x)
    mse = {}
    for m in ("light", "light+", "advanced", "advanced+"):
        snn = snncal.convert(model, x, T=8, method=m, weight_iters=20, num_images=64)
        mse[m] = ((snn(x) - ann) ** 2).mean()
    assert METHODS["light+"].steps == ("threshold", "tbias", "potential")
    assert METHODS["advanced+"].steps == ("threshold", "weight", "tbias", "potential")
    assert mse["light+"] < mse["light"] / 3 and mse["advanced+"] < mse["advanced"]
