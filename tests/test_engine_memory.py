"""The engine's memory is bounded by its chunk of time steps, not by T (README: "memory bounded for
any T"). Memory is the peak bytes of CPU tensors held during one simulation, from every allocation
and free of torch's CPU allocator (`tensor_peak_bytes` of benchmarks/simulate.py, the measure of
the peak-memory table in docs/benchmarks.md)."""

import sys
from pathlib import Path

import torch
from nets import Mixed, randomize_bn

import snncal

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from simulate import tensor_peak_bytes

IMAGES, MAX_BATCH = 4, 16  # groups of 2 images, each in chunks of 8 steps


def _peak(snn: snncal.SpikingNetwork, x: torch.Tensor, T: int, max_batch: int = MAX_BATCH) -> int:
    snn.max_batch = max_batch
    peak, out = tensor_peak_bytes(lambda: snn.simulate(x, T=T))
    assert out.shape[0] == len(x)
    return peak


def test_peak_tensor_memory_does_not_grow_with_T():
    x = torch.rand(IMAGES, 3, 8, 8)
    snn = snncal.convert(randomize_bn(Mixed()), x, T=8, threshold="max", num_images=IMAGES)
    _peak(snn, x, 16)  # the first run allocates the engine's cached static values too
    short, long = _peak(snn, x, 16), _peak(snn, x, 128)
    assert short > 0
    assert long <= 1.02 * short, (short, long)
    # the measure sees time-folded tensors: all 128 steps in one chunk need several times more
    assert _peak(snn, x, 128, max_batch=128 * IMAGES) > 4 * long
