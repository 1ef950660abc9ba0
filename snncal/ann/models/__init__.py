"""The model zoo behind a registry (import ``snncal.ann.models`` explicitly; the core never does).

>>> import snncal.ann.models
>>> net = snncal.ann.models.create("resnet20_he", num_classes=10, width=0.5)
>>> "vgg16_bn" in snncal.ann.models.list()
True
"""

from snncal.ann.models import cnn, mobilenet, pc, resnet, tv, vgg  # noqa: F401  (fill the registry)
from snncal.ann.models._registry import create, get_constructor, list_models, register_model
from snncal.ann.models.layers import Normalize, randomize_bn, with_normalize

list = list_models  # the documented name: snncal.ann.models.list()

__all__ = [
    "Normalize",
    "create",
    "get_constructor",
    "list",
    "list_models",
    "randomize_bn",
    "register_model",
    "with_normalize",
]
