"""Every zoo model, and the smallest torchvision model of each family, converts; its SNN graph
computes the same function as the ANN (the timm-style smoke test)."""

import pytest
import torch

import snncal
import snncal.ann.models

# one per torchvision family (the larger members differ only in depth or width)
TV = [
    "tv_alexnet", "tv_densenet121", "tv_googlenet", "tv_inception_v3", "tv_mnasnet0_5",
    "tv_mobilenet_v2", "tv_regnet_x_400mf", "tv_resnet18", "tv_resnext50_32x4d",
    "tv_shufflenet_v2_x0_5", "tv_squeezenet1_1", "tv_vgg11_bn",
]  # fmt: skip
ZOO = [name for name in snncal.ann.models.list() if not name.startswith(("tv_", "pc_"))]
SIZE = {"tv_inception_v3": 96, "resnet34": 64, "mobilenet": 64}


@pytest.mark.parametrize("name", ZOO + TV)
def test_model_converts(name):
    size = SIZE.get(name, 64 if name.startswith("tv_") else 32)
    kwargs = {} if name.startswith("tv_") else {"width": 0.25}
    model = snncal.ann.models.create(name, num_classes=10, **kwargs).eval()
    x = torch.rand(2, 3, size, size)
    snn = snncal.convert(model, x, T=2, threshold="max", maxpool_to_avgpool=True)
    assert len(snn.neurons()) > 0
    out = snn(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    if not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()):
        ref = model(x)
        torch.testing.assert_close(snn.ann(x), ref, atol=1e-3 * ref.abs().max().item(), rtol=1e-3)


def test_torchvision_families_are_all_covered():
    tv = [n for n in snncal.ann.models.list() if n.startswith("tv_")]
    families = {n.rstrip("0123456789_").split("_")[1].rstrip("0123456789") for n in tv} - {"wide"}
    assert families <= {n.split("_")[1].rstrip("0123456789") for n in TV}
