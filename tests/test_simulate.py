import importlib

import pytest
import torch
from nets import Mixed, Plain, randomize_bn

import snncal
from snncal.core.device import MAX_BATCH, auto_max_batch, cuda_max_batch
from snncal.core.encoding import poisson
from snncal.core.neuron import if_scan


def _convert(model, x, **kw):
    return snncal.convert(model, x, threshold="max", **kw)


def test_mixed_cnn_agrees_with_ann_at_large_T():
    model = randomize_bn(Mixed())
    x = torch.rand(16, 3, 16, 16)
    snn = _convert(model, x, T=4096)
    assert len(snn.neurons()) == 7
    ann = model(x)
    torch.testing.assert_close(snn.ann(x), ann, atol=1e-5, rtol=1e-5)
    err = (snn(x) - ann).abs().max() / ann.abs().max()
    assert err < 0.01
    assert (snn.simulate(x, T=64) - ann).abs().max() / ann.abs().max() > err  # error shrinks with T


def test_chunked_and_unchunked_simulation_agree_exactly():
    model = randomize_bn(Mixed())
    x = torch.rand(4, 3, 16, 16)
    snn = _convert(model, x, T=37)
    for n in snn.neurons().values():  # max thresholds tie with the largest current, and one ulp
        n.threshold.mul_(1.01)  # of conv rounding (batch 1 vs 4) would break the tie either way
    whole = snn.simulate(x, every_step=True)  # one group of 4 images, chunks of 16 steps
    # identical spikes; only BLAS rounding of different batch sizes may differ (one spike would
    # move an output by ~1e-3)
    for max_batch in (32, 12, 1):  # 4 images x 8 steps; 1 image x 12 steps; 1 image x 1 step
        snn.max_batch = max_batch
        torch.testing.assert_close(whole, snn.simulate(x, every_step=True), atol=1e-6, rtol=0)


def test_every_step_gives_the_output_of_every_shorter_simulation():
    model = randomize_bn(Mixed())
    x = torch.rand(4, 3, 16, 16)
    snn = _convert(model, x, T=20)
    steps = snn.simulate(x, every_step=True)
    assert steps.shape == (20, 4, 10)
    for t in (1, 7, 20):
        torch.testing.assert_close(steps[t - 1], snn.simulate(x, T=t), atol=1e-6, rtol=1e-6)


def test_engine_equals_a_hand_written_loop_over_single_steps():
    model = randomize_bn(Plain())
    x = torch.rand(5, 3, 8, 8)
    snn = _convert(model, x, T=12)
    g = snn.graph
    n1, n2 = snn.neurons().values()
    v1 = torch.zeros(5, 8, 8, 8)
    v2 = torch.zeros(5, 8, 4, 4)
    total = 0
    for _ in range(12):
        s1, v1 = if_scan(g.get_submodule("features.0")(x)[None], v1, n1.threshold, 1)
        s2, v2 = if_scan(g.get_submodule("features.3")(s1[0])[None], v2, n2.threshold, 1)
        total = total + g.fc(torch.flatten(s2[0], 1))
    torch.testing.assert_close(snn(x), total / 12, atol=1e-5, rtol=1e-5)


def test_first_layer_current_is_computed_once():
    model = randomize_bn(Plain())
    x = torch.rand(4, 3, 8, 8)
    snn = _convert(model, x, T=16)
    snn.max_batch = 4 * 4  # two groups of two images, each two chunks of 8 steps
    calls = []
    first, second = snn.graph.get_submodule("features.0"), snn.graph.get_submodule("features.3")
    first.register_forward_hook(lambda m, i, o: calls.append(("first", i[0].shape[0])))
    second.register_forward_hook(lambda m, i, o: calls.append(("second", i[0].shape[0])))
    snn(x)
    assert [c for c in calls if c[0] == "first"] == [("first", 2)] * 2  # once per group
    assert calls.count(("second", 16)) == 4  # the rest runs on [steps * N, ...] per chunk


def test_poisson_encoding_is_unbiased_and_runs():
    x = torch.randn(2, 3, 4, 4)
    spikes = poisson(x, 4000, torch.Generator().manual_seed(0)).view(4000, *x.shape)
    assert (spikes.mean(0) - x).abs().max() < 0.15
    model = randomize_bn(Plain())
    snn = _convert(model, torch.rand(4, 3, 8, 8), T=8, encoding="poisson")
    assert snn(torch.rand(4, 3, 8, 8)).shape == (4, 10)


def test_state_is_named_tensors():
    model = randomize_bn(Mixed())
    snn = _convert(model, torch.rand(4, 3, 16, 16), T=8, per_channel=True)
    keys = set(snn.state_dict())
    assert {"graph.relu.threshold", "graph.relu.v0", "graph.pool_if.threshold"} <= keys
    assert snn.neurons()["relu"].threshold.shape == (8, 1, 1)


def test_residual_add_fused_into_the_neuron_changes_no_bit(monkeypatch):
    """The engine hands ``y + x`` to the neuron as two currents; compiled or eager, with or without
    that deferral, every output bit is the same."""
    sim = importlib.import_module("snncal.core.engine")  # the module, not the function snncal.simulate
    model = randomize_bn(Mixed())
    x = torch.rand(64, 3, 16, 16)  # 64 x 8 x 16 x 16 currents: large enough for the compiled step
    snn = _convert(model, x, T=12)
    snn.max_batch = len(x) * 12  # one group of all 64 images (groups of 8 would stay eager)
    adds = sim.residual_adds(snn.graph)
    assert sorted(str(n.args[1]) for n in adds) == ["pad", "relu"]  # y + x and c4(z) + pad(...)
    fused = snn.simulate(x, every_step=True)
    monkeypatch.setenv("SNNCAL_COMPILE", "0")
    assert torch.equal(snn.simulate(x, every_step=True), fused)
    monkeypatch.setattr(sim, "residual_adds", lambda gm: frozenset())
    assert torch.equal(snn.simulate(x, every_step=True), fused)
    monkeypatch.setenv("SNNCAL_COMPILE", "1")
    assert torch.equal(snn.simulate(x, every_step=True), fused)


def test_default_max_batch_follows_the_device():
    assert snncal.ConvertConfig().max_batch is None  # "auto"
    assert auto_max_batch("cpu") == auto_max_batch(torch.device("cpu")) == MAX_BATCH == 64
    gib = 1 << 30
    # total_memory of an H200, an 80 GB, a 40 GB, a 24 GB and an 8 GB GPU
    sizes = {140 * gib: 2048, 79 * gib: 2048, 39 * gib: 1024, 23 * gib: 512, 15 * gib: 256, 7 * gib: 256}
    assert {m: cuda_max_batch(m) for m in sizes} == sizes
    with pytest.raises(ValueError, match="max_batch must be >= 1, got 0"):
        snncal.ConvertConfig(max_batch=0)


def test_auto_max_batch_simulates_like_the_cpu_value():
    model = randomize_bn(Plain())
    x = torch.rand(20, 3, 8, 8)
    snn = _convert(model, x, T=16)
    assert snn.max_batch is None
    auto = snn.simulate(x)
    snn.max_batch = 64
    assert torch.equal(auto, snn.simulate(x))


def test_mixed_precision_runs_convs_in_bfloat16_and_neurons_in_float32(monkeypatch):
    model = randomize_bn(Mixed())
    x = torch.rand(32, 3, 16, 16)
    snn = snncal.convert(model, x, T=32, threshold="max")
    ref = snn.simulate(x)
    seen = {"conv": set(), "current": set(), "potential": set()}
    snn.graph.c2.register_forward_hook(lambda m, i, out: seen["conv"].add(out.dtype))
    scan = snncal.IFNeuron.scan

    def spy(self, x, v, *args, **kwargs):
        seen["current"].add(x.dtype)
        seen["potential"].add(v.dtype)
        return scan(self, x, v, *args, **kwargs)

    monkeypatch.setattr(snncal.IFNeuron, "scan", spy)
    snn.amp = "bfloat16"
    out = snn.simulate(x)
    assert seen == {"conv": {torch.bfloat16}, "current": {torch.float32}, "potential": {torch.float32}}
    assert out.dtype == torch.float32 and not torch.equal(out, ref)
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 0.03  # 0.006 measured
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.9
    with pytest.raises(ValueError, match="amp must be one of off, bfloat16, float16"):
        snncal.ConvertConfig(amp="fp8")
    assert snncal.convert(model, x, T=8, amp="float16").amp == "float16"
