import copy
import json
import os

import golden
import pytest
import torch
import torch.nn.functional as F
from nets import Mixed, OneLayer, Plain, randomize_bn
from torch import nn

import snncal
from snncal.core.calibrate import get_method
from snncal.core.calibrate.store import MemoryBudget, SpikeStore, pack, unpack
from snncal.core.engine import ChunkSpec, _Chunk, simulate
from snncal.core.graph import prepare


class Residual(nn.Module):
    """Stem + `blocks` residual blocks (conv-relu-conv + identity, relu) + linear head."""

    def __init__(self, blocks: int = 1):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(8, 8, 3, padding=1) for _ in range(2 * blocks))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.stem(x))
        for a, b in zip(self.convs[::2], self.convs[1::2]):
            x = F.relu(b(F.relu(a(x))) + x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _layer_error(snn, x, name, ann_graph=None):
    """Rate and ANN activation of neuron `name`, by full simulation (ANN of `ann_graph` if given)."""
    rec = {}

    class Rec(_Chunk):
        def _neuron(self, target, inp, temporal):
            out = super()._neuron(target, inp, temporal)
            if target == name:
                rec["out"] = out.view(self.steps, -1, *out.shape[1:]).mean(0)
                rec["current"] = inp.view(self.steps, -1, *inp.shape[1:]).mean(0) if temporal else inp
            return out

    class AnnRec(torch.fx.Interpreter):
        def call_module(self, target, args, kwargs):
            mod = self.submodules[target]
            if isinstance(mod, (snncal.IFNeuron, nn.ReLU)):
                out = F.relu(args[0])
                if target == name:
                    rec["ann"] = out
                return out
            return super().call_module(target, args, kwargs)

    Rec(snn.graph, ChunkSpec(snn.T, snn.T), {}, {}).run(x)
    AnnRec(ann_graph if ann_graph is not None else snn.graph).run(x)
    return rec["out"], rec["ann"], rec["current"]


def _one_layer_errors(methods):
    """Per method: (rate - ANN activation ``[N, C, H, W]`` of OneLayer's neuron, the SNN)."""
    model = OneLayer()
    x = torch.rand(256, 3, 8, 8)
    out = {}
    for method in methods:
        snn = snncal.convert(model, x, T=32, method=method)
        rate, ann, _ = _layer_error(snn, x, "relu", ann_graph=prepare(model, x))
        out[method] = (rate - ann, snn)
    return out


def test_bias_correction_zeroes_the_channel_error_of_a_one_layer_net():
    found = _one_layer_errors(("none", "light"))
    errors = {m: e.mean((0, 2, 3)).abs().max().item() for m, (e, _) in found.items()}
    assert errors["light"] < errors["none"] / 5 and errors["light"] < 2e-3


def test_potential_correction_zeroes_the_element_error():
    found = _one_layer_errors(("none", "potential"))
    errors = {m: e.mean(0).abs().mean().item() for m, (e, _) in found.items()}
    assert errors["potential"] < errors["none"] / 3
    assert found["potential"][1].neurons()["relu"].v0.shape == (6, 8, 8)


def test_weight_calibration_lowers_the_layer_loss():
    model = randomize_bn(Plain())
    snn = snncal.convert(model, torch.rand(128, 3, 8, 8), T=8, method="weight", weight_iters=60)
    losses = [layer.weight_loss for layer in snn.calibration.layers]
    assert len(losses) == 2 and all(after < before for before, after in losses)


def test_calibration_improves_the_network_output():
    model = randomize_bn(Mixed())
    x = torch.rand(256, 3, 16, 16)
    ann = model(x)
    mse = {
        m: ((snncal.convert(model, x, T=16, method=m, weight_iters=40)(x) - ann) ** 2).mean()
        for m in ("none", "light", "advanced")
    }
    assert mse["advanced"] < mse["light"] < mse["none"] / 2


def _naive_light(model, x, T):
    """Reference: re-simulate the whole network for every layer it calibrates (the O(L^2) way)."""
    snn = snncal.convert(model, x, T=T, method="none")
    original = copy.deepcopy(snn.graph)
    convs = {"relu": "stem", "relu_1": "convs.0", "relu_2": "convs.1"}
    convs["adaptive_avg_pool2d_if"] = "adaptive_avg_pool2d"
    for name, neuron in snn.neurons().items():
        rate, ann, current = _layer_error(snn, x, name, original)
        gain = ((current > 0) & (current < neuron.threshold)).float().mean((0, 2, 3))
        conv = snn.graph.get_submodule(convs[name])
        conv.bias.data -= (rate - ann).mean((0, 2, 3)) / gain.clamp_min(0.05)
    return snn


def test_sequential_sweep_equals_naive_resimulation_with_a_residual_block():
    model = Residual(blocks=1)
    x = torch.rand(64, 3, 8, 8)
    fast = snncal.convert(model, x, T=16, method="light", max_batch=64 * 16)
    slow = _naive_light(model, x, 16)
    for key, value in slow.state_dict().items():
        torch.testing.assert_close(fast.state_dict()[key], value, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["light", "advanced"])
def test_sweep_cost_is_linear_in_depth(method):
    x = torch.rand(32, 3, 8, 8)
    runs = {}
    for blocks in (1, 2, 4, 8):
        snn = snncal.convert(Residual(blocks), x, T=4, method=method, weight_iters=3)
        runs[blocks] = snn.calibration.node_runs
    per_block = [(runs[b] - runs[1]) / (b - 1) for b in (2, 4, 8)]
    assert per_block[0] == per_block[1] == per_block[2]  # each block costs the same, however deep
    report = snn.calibration  # where the time went: every step, timed apart, within the total
    assert list(report.step_seconds) == ["ann", *report.steps, "finish"]
    assert all(v >= 0 for v in report.step_seconds.values())
    assert sum(report.step_seconds.values()) <= report.seconds


def test_same_seed_same_network_and_other_seed_other_images():
    model = randomize_bn(Plain())
    data = torch.utils.data.TensorDataset(torch.rand(300, 3, 8, 8), torch.zeros(300))
    a = snncal.convert(model, data, T=8, method="advanced", num_images=64, seed=3, weight_iters=5)
    b = snncal.convert(model, data, T=8, method="advanced", num_images=64, seed=3, weight_iters=5)
    c = snncal.convert(model, data, T=8, method="advanced", num_images=64, seed=4, weight_iters=5)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_methods_and_steps():
    assert get_method("light").steps == ("threshold", "bias")
    assert get_method("advanced").steps == ("threshold", "weight", "bias", "potential")
    assert get_method("potential+bias").steps == ("threshold", "bias", "potential")
    assert get_method("shift+max").steps == ("max", "shift")
    with pytest.raises(ValueError, match="unknown method 'heavy'"):
        snncal.convert(Plain(), torch.rand(4, 3, 8, 8), method="heavy")


def test_spike_store_round_trips_in_memory_and_spilled(tmp_path):
    spikes = torch.rand(3, 5, 7, 2) > 0.5
    assert torch.equal(unpack(pack(spikes), spikes.shape), spikes)
    budget = MemoryBudget(pack(spikes).numel())  # room for exactly one minibatch
    store = SpikeStore(budget, lambda: str(tmp_path))
    store.append(spikes)
    store.append(~spikes)
    assert budget.left == 0 and len(list(tmp_path.iterdir())) == 1
    assert torch.equal(store.load(0), spikes) and torch.equal(store.load(1), ~spikes)
    store.free()
    assert budget.left == pack(spikes).numel() and not list(tmp_path.iterdir())
    roomy = SpikeStore(MemoryBudget(10**6), lambda: str(tmp_path))
    roomy.append(spikes)
    assert roomy.entries[0][0].dtype == torch.bool and torch.equal(roomy.load(0), spikes)


def test_spilling_gives_the_same_network():
    model = Residual(blocks=1)
    x = torch.rand(64, 3, 8, 8)
    a = snncal.convert(model, x, T=8, method="light", max_batch=8 * 16)
    b = snncal.convert(model, x, T=8, method="light", max_batch=8 * 16, cache_gb=0.0)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert torch.equal(simulate(a.graph, x, 8), simulate(b.graph, x, 8))


@pytest.mark.parametrize(("method", "passes"), [("light", 2), ("light+", 4)])
def test_kept_currents_change_the_cost_not_the_network(method, passes):
    """A layer's input current is computed once and kept for its later simulations (shifted by
    bias correction): the same network, bit for bit, as recomputing it (``cache_gb=0``: nothing
    kept), for one segment run per layer instead of one per simulation (light: measure, then
    simulate the corrected layer; light+: two tbias steps, potential correction, final)."""
    model, x = Residual(blocks=2), torch.rand(48, 3, 8, 8)
    kept = snncal.convert(model, x, T=8, method=method, max_batch=8 * 16)
    recomputed = snncal.convert(model, x, T=8, method=method, max_batch=8 * 16, cache_gb=0.0)
    ann_only = snncal.convert(model, x, T=8, method="none", max_batch=8 * 16)
    sk, sr = kept.state_dict(), recomputed.state_dict()
    assert sk.keys() == sr.keys() and all(torch.equal(sk[k], sr[k]) for k in sk)
    ann = ann_only.calibration.node_runs
    assert recomputed.calibration.node_runs - ann == passes * (kept.calibration.node_runs - ann)


@pytest.mark.parametrize("case", sorted(golden.CASES))
def test_calibrated_networks_match_the_recorded_ones(case):
    """Every method (and other settings) gives the network the code that recorded
    tests/golden.json gave, and makes the same changes to it (within golden.RTOL)."""
    expected = json.loads(golden.PATH.read_text())[case]
    assert golden.mismatches(golden.fingerprint(*golden.build(case)), expected) == []


@pytest.mark.parametrize(("case", "step"), [(c, s) for c in sorted(golden.CASES) for s in golden.steps(c)])
def test_every_step_toggled_off_fails_its_golden(case, step, monkeypatch):
    """The goldens pin each step, not only the network's rough size: without any one step of
    its method, a case no longer matches."""
    monkeypatch.setitem(*golden.without(step))
    expected = json.loads(golden.PATH.read_text())[case]
    assert golden.mismatches(golden.fingerprint(*golden.build(case)), expected) != []


@pytest.mark.parametrize(("case", "weaker"), [("plain-hybrid-T4", dict(hybrid_epochs=0)),
                                              ("mixed-advanced-T8", dict(weight_iters=10)),
                                              ("mixed-advanced+-T4", dict(weight_iters=10))])
def test_a_weakened_step_fails_its_golden(case, weaker, monkeypatch):
    """Half the weight-calibration iterations, or hybrid training skipped, is caught too."""
    net, kw = golden.CASES[case]
    monkeypatch.setitem(golden.CASES, case, (net, {**kw, **weaker}))
    expected = json.loads(golden.PATH.read_text())[case]
    assert golden.mismatches(golden.fingerprint(*golden.build(case)), expected) != []


def test_a_killed_calibrations_spill_folder_is_removed_by_the_next(tmp_path):
    import subprocess
    import sys

    from snncal.core.calibrate.store import spill_folder

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f"snncal-{dead}-abc"
    stale.mkdir()
    (stale / "x.pt").write_bytes(b"spikes")
    mine = spill_folder(tmp_path)
    assert not stale.exists() and mine.exists() and mine.name.startswith(f"snncal-{os.getpid()}-")
    assert spill_folder(tmp_path).exists() and mine.exists()  # a live process keeps its folder
