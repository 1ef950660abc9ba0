"""Input encodings: how the network sees an image ``x`` ``[N, ...]`` at each time step.

``"direct"`` feeds ``x`` itself as a constant current; ``"poisson"`` and ``"switch"`` turn it into
spikes ``[steps * N, ...]`` (time folded into the batch) of height :func:`spike_scale`, ``max|x|``
per sample, whose mean over the steps is ~x.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ENCODINGS", "encode_input", "expected_spikes", "poisson", "spike_scale", "switch"]

ENCODINGS = ("direct", "poisson", "switch")


def spike_scale(x: Tensor) -> Tensor:
    """The height of an input spike, ``max|x|`` per sample (at least 1e-12), shaped to broadcast
    over ``x`` ``[N, ...]``."""
    return x.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))


def poisson(x: Tensor, steps: int, generator: torch.Generator | None = None) -> Tensor:
    """Rate-coded input ``[steps * N, ...]``: spikes of height ``max|x|`` (per sample) whose mean is x."""
    scale = spike_scale(x)
    p = (x.abs() / scale).expand(steps, *x.shape)
    fire = torch.rand(p.shape, generator=generator, device=x.device, dtype=x.dtype) < p
    return (fire * (torch.sign(x) * scale)).reshape(steps * x.shape[0], *x.shape[1:])


def switch(x: Tensor, t0: int, steps: int, T: int) -> Tensor:
    """Temporal-switch-coded input (Han & Roy 2020) for steps ``t0 .. t0 + steps - 1`` of ``T``,
    ``[steps * N, ...]``: each element is switched on at step 0 (at height ``max|x|`` per sample,
    with its sign) and off after ``round(T |x| / max|x|)`` steps, so its mean over ``T`` is ~x."""
    scale = spike_scale(x)
    on_steps = torch.round(x.abs() / scale * T)
    t = torch.arange(t0, t0 + steps, device=x.device).view(-1, *([1] * x.dim()))
    return ((t < on_steps) * (torch.sign(x) * scale)).reshape(steps * x.shape[0], *x.shape[1:])


def encode_input(
    x: Tensor, encoding: str, t0: int, steps: int, T: int, generator: torch.Generator | None = None
) -> Tensor:
    """The input as the network sees it at steps ``t0 .. t0 + steps - 1`` of ``T``: ``x`` itself
    (``"direct"``: a constant current), or spikes ``[steps * N, ...]`` (``"poisson"``, ``"switch"``)."""
    if encoding == "direct":
        return x
    if encoding == "poisson":
        return poisson(x, steps, generator)
    if encoding == "switch":
        return switch(x, t0, steps, T)
    raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")


def expected_spikes(x: Tensor, T: int) -> Tensor:
    """Expected input spikes per element ``[C, ...]`` over ``T`` steps of :func:`poisson`
    encoding, summed over the batch ``x`` ``[N, C, ...]`` (float64)."""
    return T * (x.abs().double() / spike_scale(x)).sum(0)
