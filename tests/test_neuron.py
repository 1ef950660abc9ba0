import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snncal.core.neuron import IFNeuron, clip_floor, if_count, if_scan
from snncal.core.neuron import compiled as neuron


@pytest.mark.parametrize("T", [1, 7, 32, 256])
def test_if_with_constant_input_is_clip_floor(T):
    x = torch.randn(4096, dtype=torch.float64) * 2
    th = torch.tensor(0.7, dtype=torch.float64)
    spikes, _ = if_scan(x, torch.zeros_like(x), th, T)
    counts = (spikes > 0).sum(0).double()
    assert torch.equal(counts, torch.clamp(torch.floor(x * T / th), 0, T))
    assert torch.allclose(spikes.mean(0), clip_floor(x, th, T))


def test_initial_potential_enters_clip_floor():
    x = torch.rand(1000, dtype=torch.float64)
    v0 = torch.rand(1000, dtype=torch.float64) * 0.5
    spikes, _ = if_scan(x, v0.clone(), torch.tensor(1.0, dtype=torch.float64), 16)  # v is advanced in place
    assert torch.allclose(spikes.mean(0), clip_floor(x, 1.0, 16, v0))


def test_constant_and_repeated_input_agree():
    x = torch.randn(3, 5)
    th = torch.tensor(0.5)
    a, va = if_scan(x, torch.zeros_like(x), th, 9)
    b, vb = if_scan(x.expand(9, 3, 5), torch.zeros_like(x), th, 9)
    assert torch.equal(a, b) and torch.equal(va, vb)


def test_multi_step_equals_loop_of_single_steps():
    x = torch.randn(20, 4, 6)
    th = torch.rand(6) + 0.5  # per channel on the last axis
    for reset in ("subtract", "zero"):
        multi, v_multi = if_scan(x, torch.zeros(4, 6), th, 20, reset)
        v = torch.zeros(4, 6)
        for t in range(20):
            s, v = if_scan(x[t : t + 1], v, th, 1, reset)
            assert torch.equal(s[0], multi[t])
        assert torch.equal(v, v_multi)


def test_reset_to_zero_drops_the_excess():
    x = torch.full((1,), 1.5)
    s_sub, v_sub = if_scan(x, torch.zeros(1), torch.tensor(1.0), 2, "subtract")
    s_zero, v_zero = if_scan(x, torch.zeros(1), torch.tensor(1.0), 2, "zero")
    assert s_sub.sum() == 2 and v_sub.item() == pytest.approx(1.0)  # 1.5-1, +1.5-1
    assert s_zero.sum() == 2 and v_zero.item() == 0.0


def test_threshold_shift_adds_half_a_threshold_over_T():
    """The shift turns ClipFloor's floor into a rounding: 48.7 spikes' worth of input fires 48
    times without it and 49 times with it."""
    x = torch.full((1,), 0.487)
    shifted, _ = IFNeuron(1.0, shift=True).scan(x, torch.zeros(1), 100, 100)
    plain, _ = IFNeuron(1.0).scan(x, torch.zeros(1), 100, 100)
    assert plain.sum().item() == 48  # floor(48.7)
    assert shifted.sum().item() == 49  # floor(48.7 + 0.5)


def test_neuron_refuses_stand_alone_forward_and_bad_reset():
    with pytest.raises(RuntimeError, match="simulate"):
        IFNeuron()(torch.zeros(1))
    with pytest.raises(ValueError, match="reset must be one of"):
        IFNeuron(reset="hard")


# Each (reset, input layout) pair is a graph of its own for torch.compile, compiled afresh (seconds)
# on a new checkout: two pairs cover both resets and both layouts.
@pytest.mark.parametrize(("reset", "constant"), [("subtract", True), ("zero", False)])
def test_compiled_step_equals_eager_ops(monkeypatch, reset, constant):
    """Large tensors take the torch.compile'd step; it must give the eager loop's bits exactly."""
    g = torch.Generator().manual_seed(0)
    shape = (8, 16, 32, 32)  # 131072 elements >= FUSE_MIN_NUMEL
    x = torch.randn(shape if constant else (5, *shape), generator=g)
    th = torch.rand(16, 1, 1, generator=g) + 0.5
    v0 = torch.rand(shape, generator=g)
    monkeypatch.setenv("SNNCAL_COMPILE", "0")
    eager, v_eager = if_scan(x, v0.clone(), th, 5, reset, bias=0.01)
    monkeypatch.setenv("SNNCAL_COMPILE", "1")
    fused, v_fused = if_scan(x, v0.clone(), th, 5, reset, bias=0.01)
    assert neuron._compiled["scan"] is not None  # compiled here, no fallback
    assert torch.equal(fused, eager) and torch.equal(v_fused, v_eager)
    assert 0.05 < (eager > 0).float().mean() < 0.95  # spikes and silences both occur


# Each (reset, input layout) pair is a graph of its own for torch.compile, compiled afresh (seconds)
# on a new checkout: two pairs cover both resets and both layouts.
@pytest.mark.parametrize(("reset", "constant"), [("subtract", True), ("zero", False)])
def test_spike_counts_are_the_scans_compiled_or_not(monkeypatch, reset, constant):
    """Calibration's count of the spikes (compiled above COUNT_MIN_NUMEL, eager below or with
    SNNCAL_COMPILE=0) must be the scan's, with the same final potential and spike trains."""
    g = torch.Generator().manual_seed(0)
    shape = (4, 16, 16, 16)  # 16384 elements >= COUNT_MIN_NUMEL
    T = 11  # two blocks of SCAN_BLOCK, the second one short
    x = torch.randn(shape if constant else (T, *shape), generator=g)
    bias = torch.randn(T, 1, 16, 1, 1, generator=g) * 0.1  # one per step and channel
    th = torch.rand(16, 1, 1, generator=g) + 0.5
    v0 = torch.rand(shape, generator=g)
    out, v_scan = if_scan(x, v0.clone(), th, T, reset, bias)
    for compile_ in ("0", "1"):
        monkeypatch.setenv("SNNCAL_COMPILE", compile_)
        count, v, spikes = if_count(x, v0.clone(), th, T, reset=reset, bias=bias, spikes=True)
        assert torch.equal(spikes, out > 0) and torch.equal(v, v_scan)
        assert torch.equal(count, (out > 0).sum(0, dtype=torch.float32))
        assert if_count(x, v0.clone(), th, T, reset=reset, bias=bias)[2] is None
    assert neuron._compiled["count"] is not None  # compiled here, no fallback
    assert 0.05 < spikes.float().mean() < 0.95


def test_a_backend_that_cannot_compile_falls_back_to_eager_ops(monkeypatch):
    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setenv("SNNCAL_COMPILE", "1")
    monkeypatch.setattr(neuron, "_compiled", {"scan": broken, "count": broken})
    x = torch.rand(4, 16, 16, 16) * 2
    with pytest.warns(UserWarning, match="torch.compile failed .*no C.. compiler"):
        count, v, _ = if_count(x, torch.zeros_like(x), torch.tensor(0.5), 8)
    assert neuron._compiled == {"scan": None, "count": None}
    out, v_scan = if_scan(x, torch.zeros_like(x), torch.tensor(0.5), 8)
    assert torch.equal(count, (out > 0).sum(0, dtype=torch.float32)) and torch.equal(v, v_scan)


def test_without_a_cpp_compiler_neurons_run_as_eager_ops(tmp_path):
    """A user without a C++ compiler (torch.compile's CPU backend needs one): one warning that
    says so, then the same spikes as eager ops. A fresh process with no compiler on ``CXX`` and an
    empty kernel cache, as such a user meets it."""
    script = (
        "import warnings, torch\n"
        "from snncal.core.neuron import if_scan\n"
        "x = torch.rand(8, 16, 32, 32, generator=torch.Generator().manual_seed(0)) * 2\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    out, v = if_scan(x, torch.zeros_like(x), torch.tensor(0.5), 8)\n"
        "import os; os.environ['SNNCAL_COMPILE'] = '0'\n"
        "eager, v_eager = if_scan(x, torch.zeros_like(x), torch.tensor(0.5), 8)\n"
        "print(torch.equal(out, eager) and torch.equal(v, v_eager))\n"
        "print([str(w.message) for w in caught])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "SNNCAL_COMPILE": "1",
           "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    equal, messages = run.stdout.splitlines()[-2:]
    assert equal == "True"
    assert "torch.compile failed" in messages and "eager ops" in messages
    assert messages.count("torch.compile failed") == 1
