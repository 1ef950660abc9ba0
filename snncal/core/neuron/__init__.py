"""The integrate-and-fire neuron: pure kernels over ``[T, N, ...]`` (:mod:`.kernel`), their
compiled blocks with the eager fallback (:mod:`.compiled`) and the thin module holding buffers
(:mod:`.module`)."""

from snncal.core.neuron.compiled import SCAN_BLOCK
from snncal.core.neuron.kernel import RESETS, clip_floor, if_count, if_scan, surrogate_scan
from snncal.core.neuron.module import IFNeuron, is_neuron

__all__ = [
    "RESETS",
    "SCAN_BLOCK",
    "IFNeuron",
    "clip_floor",
    "if_count",
    "if_scan",
    "is_neuron",
    "surrogate_scan",
]
