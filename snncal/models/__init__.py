"""The model zoo behind a registry (import ``snncal.models`` explicitly; the core never does).

>>> import snncal.models
>>> net = snncal.models.create("resnet20_he", num_classes=10, width=0.5)
>>> "vgg16_bn" in snncal.models.list()
True
"""

from . import cnn, mobilenet, resnet, tv, vgg  # noqa: F401  (fill the registry)
from ._registry import create, get_constructor, list_models, register_model
from .layers import Normalize, with_normalize

list = list_models  # the documented name: snncal.models.list()

__all__ = [
    "Normalize",
    "create",
    "get_constructor",
    "list",
    "list_models",
    "register_model",
    "with_normalize",
]
