"""Exact sums (calibrate/sums.py): the same bits in any order and grouping, within the stated bound."""

import torch

from snncal.core.calibrate.sums import ExactSum, all_reduce_exact


def _terms(n: int = 4000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    scale = torch.pow(2.0, torch.randint(-30, 3, (n, 1), generator=gen).float())  # wide exponents
    return (torch.randn(n, 5, generator=gen) * scale).clamp(-4, 4)


def _exact(parts, bound: float, terms: int) -> torch.Tensor:
    s = ExactSum(bound, terms)
    for p in parts:
        s.add(p, 0)
    return s.value()


def test_any_order_and_grouping_gives_the_same_bits():
    x = _terms()
    ref = _exact([x], 4.0, len(x))
    float32_sums = set()
    for seed, size in [(1, 1), (2, 7), (3, 64), (4, 1000)]:
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        parts = x[perm].split(size)
        assert torch.equal(_exact(parts, 4.0, len(x)), ref)
        float32_sums.add(tuple(sum(p.sum(0) for p in parts).tolist()))
    assert len(float32_sums) > 1  # what the exact sum is for: float32 sums differ by order


def test_the_error_is_within_the_bound():
    x = _terms()
    s = ExactSum(4.0, len(x))
    s.add(x, 0)
    exact = x.double().sum(0)
    assert (s.value() - exact).abs().max() <= 4.0 * len(x) * 2.0**-62 * len(x)  # per term
    assert (s.value() - exact).abs().max() <= 2.0**-30  # far below a float32 sum's rounding


def test_counts_and_empty_sums():
    s = ExactSum(1.0, 10)
    s.add(torch.tensor([[True, False], [True, True]]), 0)
    assert s.value().tolist() == [2.0, 1.0]
    assert ExactSum(0.0, 0).value().item() == 0.0  # nothing added; a zero bound is allowed
    all_reduce_exact(s)  # no process group: nothing changes
    assert s.value().tolist() == [2.0, 1.0]
