"""pytorchcv classifiers that convert, registered as ``pc_<name>`` when pytorchcv is installed.

Li et al. (2021) took their ImageNet MobileNet from pytorchcv (``pip install 'snncal[pytorchcv]'``).
Models are built with random weights unless ``pretrained=True`` (pytorchcv downloads its weights;
then keep ``num_classes`` at the data set's, 1000 for ImageNet). pytorchcv takes 10 s to import all
its models, so it is imported on the first build, not when the zoo is.
"""

from __future__ import annotations

import functools
import importlib.util

import torch.nn as nn

from snncal.ann.models._registry import register_model

__all__ = [
]

# benchmarks/pytorchcv_zoo.py (docs/data/pytorchcv_zoo.json, docs/results.md): the classifiers of
# pytorchcv 0.0.74 that snncal's graph checks accept (only ReLU/ReLU6, fx-traceable, no op that
# does not convert; max pools need ``maxpool_to_avgpool=True``), the first of each family converted.
PYTORCHCV_RELU_MODELS: tuple[str, ...] = (
    "alexnetb", "vgg11", "vgg13", "vgg16", "vgg19", "bn_vgg11", "bn_vgg13", "bn_vgg16", "bn_vgg19",
    "bn_vgg11b", "bn_vgg13b", "bn_vgg16b", "bn_vgg19b", "bninception", "resnet10", "resnet12",
    "resnet14", "resnetbc14b", "resnet16", "resnet18_wd4", "resnet18_wd2", "resnet18_w3d4",
    "resnet18", "resnet26", "resnetbc26b", "resnet34", "resnetbc38b", "resnet50", "resnet50b",
    "resnet101", "resnet101b", "resnet152", "resnet152b", "resnet200", "resnet200b", "preresnet10",
    "preresnet12", "preresnet14", "preresnetbc14b", "preresnet16", "preresnet18_wd4",
    "preresnet18_wd2", "preresnet18_w3d4", "preresnet18", "preresnet26", "preresnetbc26b",
    "preresnet34", "preresnetbc38b", "preresnet50", "preresnet50b", "preresnet101", "preresnet101b",
    "preresnet152", "preresnet152b", "preresnet200", "preresnet200b", "preresnet269b",
    "resnext14_16x4d", "resnext14_32x2d", "resnext14_32x4d", "resnext26_16x4d", "resnext26_32x2d",
    "resnext26_32x4d", "resnext38_32x4d", "resnext50_32x4d", "resnext101_32x4d", "resnext101_64x4d",
    "regnetx002", "regnetx004", "regnetx006", "regnetx008", "regnetx016", "regnetx032",
    "regnetx040", "regnetx064", "regnetx080", "regnetx120", "regnetx160", "regnetx320",
    "pyramidnet101_a360", "diracnet18v2", "diracnet34v2", "sharesnet18", "sharesnet34",
    "sharesnet50", "sharesnet50b", "sharesnet101", "sharesnet101b", "sharesnet152", "sharesnet152b",
    "densenet121", "densenet161", "densenet169", "densenet201", "sparsenet121", "sparsenet161",
    "sparsenet169", "sparsenet201", "sparsenet264", "peleenet", "wrn50_2", "drnc26", "drnc42",
    "drnc58", "drnd22", "drnd38", "drnd54", "drnd105", "dpn68", "dpn68b", "dpn98", "dpn107",
    "dpn131", "channelnet", "dla34", "dla46c", "dla46xc", "dla60", "dla60x", "dla60xc", "dla102",
    "dla102x", "dla102x2", "dla169", "vovnet27s", "vovnet39", "vovnet57", "selecsls42",
    "selecsls42b", "selecsls60", "selecsls60b", "selecsls84", "hardnet39ds", "hardnet68ds",
    "hardnet68", "hardnet85", "squeezenet_v1_0", "squeezenet_v1_1", "squeezeresnet_v1_0",
    "squeezeresnet_v1_1", "sqnxt23_w1", "sqnxt23_w3d2", "sqnxt23_w2", "sqnxt23v5_w1",
    "sqnxt23v5_w3d2", "sqnxt23v5_w2", "shufflenet_g1_w1", "shufflenet_g2_w1", "shufflenet_g3_w1",
    "shufflenet_g4_w1", "shufflenet_g8_w1", "shufflenet_g1_w3d4", "shufflenet_g3_w3d4",
    "shufflenet_g1_wd2", "shufflenet_g3_wd2", "shufflenet_g1_wd4", "shufflenet_g3_wd4",
    "shufflenetv2_wd2", "shufflenetv2_w1", "shufflenetv2_w3d2", "shufflenetv2_w2",
    "shufflenetv2b_wd2", "shufflenetv2b_w1", "shufflenetv2b_w3d2", "shufflenetv2b_w2",
    "mobilenet_w1", "mobilenet_w3d4", "mobilenet_wd2", "mobilenet_wd4", "mobilenetb_w1",
    "mobilenetb_w3d4", "mobilenetb_wd2", "mobilenetb_wd4", "fdmobilenet_w1", "fdmobilenet_w3d4",
    "fdmobilenet_wd2", "fdmobilenet_wd4", "mobilenetv2_w1", "mobilenetv2_w3d4", "mobilenetv2_wd2",
    "mobilenetv2_wd4", "mobilenetv2b_w1", "mobilenetv2b_w3d4", "mobilenetv2b_wd2",
    "mobilenetv2b_wd4", "igcv3_w3d4", "igcv3_wd2", "igcv3_wd4", "mnasnet_b1", "darts",
    "proxylessnas_cpu", "proxylessnas_gpu", "proxylessnas_mobile", "proxylessnas_mobile14",
    "fbnet_cb", "xception", "inceptionv3", "inceptionv4", "inceptionresnetv1", "inceptionresnetv2",
    "polynet", "nasnet_4a1056", "nasnet_6a4032", "pnasnet5large", "spnasnet", "nin_cifar10",
    "nin_cifar100", "nin_svhn", "resnet20_cifar10", "resnet20_cifar100", "resnet20_svhn",
    "resnet56_cifar10", "resnet56_cifar100", "resnet56_svhn", "resnet110_cifar10",
    "resnet110_cifar100", "resnet110_svhn", "resnet164bn_cifar10", "resnet164bn_cifar100",
    "resnet164bn_svhn", "resnet272bn_cifar10", "resnet272bn_cifar100", "resnet272bn_svhn",
    "resnet542bn_cifar10", "resnet542bn_cifar100", "resnet542bn_svhn", "resnet1001_cifar10",
    "resnet1001_cifar100", "resnet1001_svhn", "resnet1202_cifar10", "resnet1202_cifar100",
    "resnet1202_svhn", "preresnet20_cifar10", "preresnet20_cifar100", "preresnet20_svhn",
    "preresnet56_cifar10", "preresnet56_cifar100", "preresnet56_svhn", "preresnet110_cifar10",
    "preresnet110_cifar100", "preresnet110_svhn", "preresnet164bn_cifar10",
    "preresnet164bn_cifar100", "preresnet164bn_svhn", "preresnet272bn_cifar10",
    "preresnet272bn_cifar100", "preresnet272bn_svhn", "preresnet542bn_cifar10",
    "preresnet542bn_cifar100", "preresnet542bn_svhn", "preresnet1001_cifar10",
    "preresnet1001_cifar100", "preresnet1001_svhn", "preresnet1202_cifar10",
    "preresnet1202_cifar100", "preresnet1202_svhn", "resnext20_16x4d_cifar10",
    "resnext20_16x4d_cifar100", "resnext20_16x4d_svhn", "resnext20_32x2d_cifar10",
    "resnext20_32x2d_cifar100", "resnext20_32x2d_svhn", "resnext20_32x4d_cifar10",
    "resnext20_32x4d_cifar100", "resnext20_32x4d_svhn", "resnext29_32x4d_cifar10",
    "resnext29_32x4d_cifar100", "resnext29_32x4d_svhn", "resnext29_16x64d_cifar10",
    "resnext29_16x64d_cifar100", "resnext29_16x64d_svhn", "resnext272_1x64d_cifar10",
    "resnext272_1x64d_cifar100", "resnext272_1x64d_svhn", "resnext272_2x32d_cifar10",
    "resnext272_2x32d_cifar100", "resnext272_2x32d_svhn", "pyramidnet110_a48_cifar10",
    "pyramidnet110_a48_cifar100", "pyramidnet110_a48_svhn", "pyramidnet110_a84_cifar10",
    "pyramidnet110_a84_cifar100", "pyramidnet110_a84_svhn", "pyramidnet110_a270_cifar10",
    "pyramidnet110_a270_cifar100", "pyramidnet110_a270_svhn", "pyramidnet164_a270_bn_cifar10",
    "pyramidnet164_a270_bn_cifar100", "pyramidnet164_a270_bn_svhn", "pyramidnet200_a240_bn_cifar10",
    "pyramidnet200_a240_bn_cifar100", "pyramidnet200_a240_bn_svhn", "pyramidnet236_a220_bn_cifar10",
    "pyramidnet236_a220_bn_cifar100", "pyramidnet236_a220_bn_svhn", "pyramidnet272_a200_bn_cifar10",
    "pyramidnet272_a200_bn_cifar100", "pyramidnet272_a200_bn_svhn", "densenet40_k12_cifar10",
    "densenet40_k12_cifar100", "densenet40_k12_svhn", "densenet40_k12_bc_cifar10",
    "densenet40_k12_bc_cifar100", "densenet40_k12_bc_svhn", "densenet40_k24_bc_cifar10",
    "densenet40_k24_bc_cifar100", "densenet40_k24_bc_svhn", "densenet40_k36_bc_cifar10",
    "densenet40_k36_bc_cifar100", "densenet40_k36_bc_svhn", "densenet100_k12_cifar10",
    "densenet100_k12_cifar100", "densenet100_k12_svhn", "densenet100_k24_cifar10",
    "densenet100_k24_cifar100", "densenet100_k24_svhn", "densenet100_k12_bc_cifar10",
    "densenet100_k12_bc_cifar100", "densenet100_k12_bc_svhn", "densenet190_k40_bc_cifar10",
    "densenet190_k40_bc_cifar100", "densenet190_k40_bc_svhn", "densenet250_k24_bc_cifar10",
    "densenet250_k24_bc_cifar100", "densenet250_k24_bc_svhn", "wrn16_10_cifar10",
    "wrn16_10_cifar100", "wrn16_10_svhn", "wrn28_10_cifar10", "wrn28_10_cifar100", "wrn28_10_svhn",
    "wrn40_8_cifar10", "wrn40_8_cifar100", "wrn40_8_svhn", "ror3_56_cifar10", "ror3_56_cifar100",
    "ror3_56_svhn", "ror3_110_cifar10", "ror3_110_cifar100", "ror3_110_svhn", "ror3_164_cifar10",
    "ror3_164_cifar100", "ror3_164_svhn", "rir_cifar10", "rir_cifar100", "rir_svhn",
    "resdropresnet20_cifar10", "resdropresnet20_cifar100", "resdropresnet20_svhn",
    "shakeshakeresnet20_2x16d_cifar10", "shakeshakeresnet20_2x16d_cifar100",
    "shakeshakeresnet20_2x16d_svhn", "shakeshakeresnet26_2x32d_cifar10",
    "shakeshakeresnet26_2x32d_cifar100", "shakeshakeresnet26_2x32d_svhn",
    "shakedropresnet20_cifar10", "shakedropresnet20_cifar100", "shakedropresnet20_svhn",
    "resneta10", "resnetabc14b", "resneta18", "resneta50b", "resneta101b", "resneta152b",
    "resnetd50b", "resnetd101b", "resnetd152b", "resnet10_cub", "resnet12_cub", "resnet14_cub",
    "resnetbc14b_cub", "resnet16_cub", "resnet18_cub", "resnet26_cub", "resnetbc26b_cub",
    "resnet34_cub", "resnetbc38b_cub", "resnet50_cub", "resnet50b_cub", "resnet101_cub",
    "resnet101b_cub", "resnet152_cub", "resnet152b_cub", "resnet200_cub", "resnet200b_cub",
    "mobilenet_w1_cub", "mobilenet_w3d4_cub", "mobilenet_wd2_cub", "mobilenet_wd4_cub",
    "fdmobilenet_w1_cub", "fdmobilenet_w3d4_cub", "fdmobilenet_wd2_cub", "fdmobilenet_wd4_cub",
    "proxylessnas_cpu_cub", "proxylessnas_gpu_cub", "proxylessnas_mobile_cub",
    "proxylessnas_mobile14_cub"
)  # fmt: skip


def _build(pc_name: str, num_classes: int = 1000, width: float = 1.0, pretrained: bool = False,
           **kw) -> nn.Module:
    if width != 1.0:
        raise ValueError(f"pc_{pc_name}: pytorchcv models take no width multiplier (got {width}); "
                         "their names carry it (mobilenet_wd4 is width 1/4)")
    if kw.pop("in_channels", 3) != 3:
        raise ValueError(f"pc_{pc_name}: pytorchcv models take 3-channel input only")
    from pytorchcv.model_provider import get_model

    return get_model(pc_name, pretrained=pretrained, num_classes=num_classes, **kw)


if importlib.util.find_spec("pytorchcv") is not None:
    for _name in PYTORCHCV_RELU_MODELS:
        _fn = functools.partial(_build, _name)
        _fn.__doc__ = f"pytorchcv ``{_name}``, random weights unless ``pretrained=True``."
        register_model(_fn, name=f"pc_{_name}")
