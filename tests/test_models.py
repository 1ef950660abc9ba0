"""Every registered model builds, runs forward and backward, and traces with torch.fx."""

from __future__ import annotations

import pytest
import torch
import torch.fx as fx
import torch.nn as nn
import torchvision

import snncal.ann.models as zoo

ZOO = [n for n in zoo.list() if not n.startswith(("tv_", "pc_"))]
TV = [n for n in zoo.list() if n.startswith("tv_")]
IMAGENET = {"resnet34", "mobilenet"}
RELU_FAMILY = (nn.ReLU, nn.ReLU6)
ACTIVATIONS = tuple(
    getattr(nn, n)
    for n in ("GELU", "SiLU", "Sigmoid", "Tanh", "Hardswish", "Hardsigmoid", "ELU", "LeakyReLU")
)


def _activation_types(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules() if isinstance(m, (*RELU_FAMILY, *ACTIVATIONS))}


def test_registry_has_the_issue_models() -> None:
    expected = {
        "vgg16", "vgg16_bn", "resnet20", "resnet20_he", "resnet20_nobn", "resnet32_he", "resnet56_he",
        "resnet34", "mobilenet", "mobilenet_cifar",
        "tv_resnet18", "tv_vgg11_bn", "tv_mobilenet_v2", "tv_alexnet",
    }  # fmt: skip
    assert expected <= set(zoo.list())
    assert zoo.list() == sorted(zoo.list())


@pytest.mark.parametrize("name", ZOO)
def test_zoo_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=7, width=0.125)
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_traces_and_uses_relu_only(name: str) -> None:
    model = zoo.create(name, width=0.125).eval()
    assert _activation_types(model) <= set(RELU_FAMILY)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    gm = fx.symbolic_trace(model)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(gm(x), model(x))


@pytest.mark.parametrize("name", ["resnet20_he", "vgg16_bn", "mobilenet_cifar", "resnet34", "resnet20_nobn"])
def test_width_multiplier_scales_channels(name: str) -> None:
    def params(w: float) -> int:
        return sum(p.numel() for p in zoo.create(name, width=w).parameters())

    assert params(0.25) < params(0.5) < params(1.0)


def test_paper_shapes() -> None:
    he = zoo.create("resnet20_he")
    convs = [m for m in he.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19 and convs[-1].out_channels == 64
    assert zoo.create("resnet56_he").fc.in_features == 64
    # Sengupta et al.'s / Rathi et al.'s ResNet-20: 3 pre-process + 16 block 3x3 convs, no BN, no bias
    nobn = zoo.create("resnet20_nobn")
    convs = [m for m in nobn.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19 and [c.out_channels for c in convs[:3]] == [64] * 3
    assert convs[-1].out_channels == 512 and nobn.classifier.in_features == 512 * 2 * 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in nobn.modules())
    synapses = [m for m in nobn.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(m.bias is None for m in synapses)
    assert zoo.create("resnet20").fc.in_features == 256
    vgg = zoo.create("vgg16")
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.25 for m in vgg.modules()) > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in vgg.modules())
    assert not any(isinstance(m, nn.Dropout) for m in zoo.create("vgg16_bn").modules())
    # without BN, the logits at init keep the input's scale (N(0, 0.01) linears gave std 4e-5 here)
    torch.manual_seed(0)
    assert zoo.create("vgg16", width=0.25).eval()(torch.randn(16, 3, 32, 32)).std() > 0.01
    deep_stem = zoo.create("resnet34").stem
    assert [m.kernel_size for m in deep_stem if isinstance(m, nn.Conv2d)] == [(3, 3)] * 3
    assert zoo.create("mobilenet").features[0][0].stride == (2, 2)
    assert zoo.create("mobilenet_cifar").features[0][0].stride == (1, 1)


def test_option_a_shortcut() -> None:
    model = zoo.create("resnet20_he", width=0.25, shortcut="pad")
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 19
    out = fx.symbolic_trace(model)(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_in_channels() -> None:
    model = zoo.create("resnet20_he", width=0.25, in_channels=1)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_normalize_travels_in_the_model() -> None:
    torch.manual_seed(0)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    model = zoo.create("resnet20_he", width=0.25, mean=mean, std=std).eval()
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())
    x = torch.rand(2, 3, 32, 32)
    ref = model.net((x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1))
    torch.testing.assert_close(model(x), ref)
    fx.symbolic_trace(model)
    with pytest.raises(ValueError, match="both mean and std"):
        zoo.create("resnet20_he", mean=mean)


def test_unknown_name_lists_known_models() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet9000'.*resnet20_he.*vgg16_bn"):
        zoo.create("resnet9000")


def test_register_twice_fails() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        zoo.register_model(lambda **kw: nn.Identity(), name="resnet20_he")


@pytest.mark.parametrize("name", TV)
def test_torchvision_models_are_relu_only_and_traceable(name: str, monkeypatch) -> None:
    # Meta device: no memory, no init cost, nothing downloaded. RegNet's constructor computes its
    # block widths with tensor ops and reads them back, which meta tensors cannot: that arithmetic
    # runs on the CPU, the modules are still built on the meta device.
    params = torchvision.models.regnet.BlockParams
    on_cpu = params.from_init_params.__func__

    def widths_on_cpu(cls, *args, **kw):
        with torch.device("cpu"):
            return on_cpu(cls, *args, **kw)

    monkeypatch.setattr(params, "from_init_params", classmethod(widths_on_cpu))
    with torch.device("meta"):
        model = zoo.create(name, num_classes=10)
    assert next(model.parameters()).is_meta
    assert _activation_types(model) <= set(RELU_FAMILY)
    fx.symbolic_trace(model)


@pytest.mark.parametrize(
    ("name", "size"),
    [("tv_resnet18", 64), ("tv_mobilenet_v2", 64), ("tv_vgg11_bn", 64), ("tv_alexnet", 64),
     ("tv_regnet_x_400mf", 64)],
)  # fmt: skip
def test_torchvision_forward_backward(name: str, size: int) -> None:
    model = zoo.create(name, num_classes=10)
    assert _activation_types(model) <= set(RELU_FAMILY)
    out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, 10)
    out.sum().backward()


def test_torchvision_rejects_width() -> None:
    with pytest.raises(ValueError, match="no width multiplier"):
        zoo.create("tv_resnet18", width=0.5)
