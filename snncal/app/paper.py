"""The published CIFAR-10 figures of Li et al. (ICML 2021), Table 9, to print beside our rows.

Top-1 %: the ANN, then the SNN at T = 32, 64, 128, 256 and >= 2048 (``None``: not reported).
Method names are snncal's (``opt`` is "Opt. with BN" of the paper's re-implementation).
"""

from __future__ import annotations

__all__ = [
    "NETWORKS",
    "TABLE9",
    "published",
]

_TS = (32, 64, 128, 256, 2048)

TABLE9: dict[str, dict[str, tuple[float, tuple[float | None, ...]]]] = {
    "ResNet-20": {
        "spike_norm": (89.10, (None, None, None, None, 87.46)),
        "hybrid": (93.15, (None, None, None, 92.22, 92.94)),
        "rmp": (91.47, (None, None, 87.60, 89.37, 91.36)),
        "tsc": (91.47, (None, 69.38, 88.57, 90.10, 91.42)),
        "opt": (95.46, (84.06, 92.48, 94.68, 95.30, 94.42)),
        "light": (95.46, (94.44, 95.20, 95.29, 95.36, 95.47)),
        "advanced": (95.46, (94.78, 95.30, 95.42, 95.41, 95.45)),
    },
    "VGG-16": {
        "spike_norm": (91.70, (None, None, None, None, 91.55)),
        "hybrid": (92.81, (None, None, 91.13, None, 92.48)),
        "rmp": (93.63, (60.30, 90.35, 92.41, 93.04, 93.63)),
        "tsc": (93.63, (None, 92.79, 93.27, 93.45, 93.63)),
        "opt": (95.72, (76.24, 90.64, 94.11, 95.33, 95.73)),
        "light": (95.72, (94.02, 95.20, 95.61, 95.77, 95.73)),
        "advanced": (95.72, (93.71, 95.14, 95.65, 95.79, 95.79)),
    },
    "MobileNet": {
        "opt": (92.48, (9.98, 23.99, 79.35, 90.49, 92.35)),
        "light": (92.48, (81.94, 89.47, 91.61, 92.20, 92.44)),
        "advanced": (92.48, (82.37, 90.40, 91.70, 92.29, 92.47)),
    },
}

# zoo architectures -> the paper's network of the same shape
NETWORKS = {
    "resnet20": "ResNet-20", "resnet20_he": "ResNet-20", "resnet20_nobn": "ResNet-20", "vgg16": "VGG-16",
    "vgg16_bn": "VGG-16",
    "mobilenet_cifar": "MobileNet",
}


def published(network: str | None, method: str) -> tuple[float, dict[int, float]] | None:
    """``(ANN, {T: accuracy})`` the paper reports for ``method`` on ``network``, if any."""
    ann, accs = TABLE9.get(network or "", {}).get(method, (None, ()))
    if ann is None:
        return None
    return ann, {T: a for T, a in zip(_TS, accs, strict=True) if a is not None}
