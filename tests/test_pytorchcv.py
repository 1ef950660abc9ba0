"""pytorchcv's classifiers in the zoo (``pc_<name>``): a sample converts, with random weights."""

import pytest
import torch

import snncal
import snncal.ann.models as zoo
from snncal.ann.models.pc import PYTORCHCV_RELU_MODELS

pytest.importorskip("pytorchcv")

# the paper's ImageNet MobileNet (at width 1/4), a CIFAR ResNet, and MobileNetV2's ReLU6 blocks;
# pytorchcv's ImageNet models end in a fixed 7x7 average pool, so they need 224x224
SAMPLE = [("pc_mobilenet_wd4", 224), ("pc_resnet20_cifar10", 32), ("pc_mobilenetv2_wd4", 224)]


def test_registered_from_the_recorded_list():
    names = zoo.list("pc_")
    assert names == sorted(f"pc_{n}" for n in PYTORCHCV_RELU_MODELS)
    assert {name for name, _ in SAMPLE} <= set(names)


@pytest.mark.parametrize(("name", "size"), SAMPLE)
def test_sample_converts(name, size):
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=10).eval()  # pretrained=False: nothing is downloaded
    x = torch.rand(2, 3, size, size)
    snn = snncal.convert(model, x, T=2, threshold="max")
    assert len(snn.neurons()) > 0
    out = snn(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    ref = model(x)
    torch.testing.assert_close(snn.ann(x), ref, atol=1e-3 * ref.abs().max().item(), rtol=1e-3)


def test_rejects_width():
    with pytest.raises(ValueError, match="no width multiplier"):
        zoo.create("pc_mobilenet_wd4", width=0.5)
