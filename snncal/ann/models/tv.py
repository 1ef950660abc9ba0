"""torchvision classifiers built only of ReLU/ReLU6 activations, registered as ``tv_<name>``.

They are built with random weights (``weights=None``); nothing is ever downloaded. To start from
pretrained weights, load a state dict you already have into the returned model.
"""

from __future__ import annotations

import functools

import torch.nn as nn
import torchvision.models as tvm

from snncal.ann.models._registry import register_model

__all__ = [
]

# Checked once by building each on the meta device, listing its activation modules and tracing it
# with torch.fx (tests re-check a few): only ReLU/ReLU6, fx-traceable. Excluded: EfficientNet,
# MobileNetV3, RegNetY (SiLU / Hardswish / Sigmoid), ConvNeXt, Swin, ViT, MaxViT (GELU, attention).
TORCHVISION_RELU_MODELS: tuple[str, ...] = (
    "alexnet",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "googlenet", "inception_v3",
    "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
    "mobilenet_v2",
    "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf",
    "regnet_x_16gf", "regnet_x_32gf",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
    "squeezenet1_0", "squeezenet1_1",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "wide_resnet50_2", "wide_resnet101_2",
)  # fmt: skip

# Auxiliary heads return tuples in training mode and are not part of the classifier.
_EXTRA_KWARGS: dict[str, dict] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def _build(tv_name: str, num_classes: int = 1000, width: float = 1.0, **kw) -> nn.Module:
    if width != 1.0:
        raise ValueError(f"tv_{tv_name}: torchvision models take no width multiplier (got {width})")
    if kw.pop("in_channels", 3) != 3:
        raise ValueError(f"tv_{tv_name}: torchvision models take 3-channel input only")
    args = {**_EXTRA_KWARGS.get(tv_name, {}), **kw}
    return tvm.get_model(tv_name, weights=None, num_classes=num_classes, **args)


for _name in TORCHVISION_RELU_MODELS:
    _fn = functools.partial(_build, _name)
    _fn.__doc__ = f"torchvision ``{_name}`` with random weights."
    register_model(_fn, name=f"tv_{_name}")
