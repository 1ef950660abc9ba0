"""The model registry: a name -> constructor table filled by ``@register_model``."""

from __future__ import annotations

import builtins
from collections.abc import Callable

import torch.nn as nn

__all__ = ["create", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Register a constructor ``fn(num_classes=..., width=..., **kw) -> nn.Module`` by its name.

    Used as ``@register_model`` or ``@register_model(name="...")``.
    """

    def wrap(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is registered twice")
        _MODELS[key] = f
        return f

    return wrap(fn) if fn is not None else wrap


def list_models(pattern: str | None = None) -> builtins.list[str]:
    """Sorted names of all registered models, optionally filtered by a substring."""
    names = sorted(_MODELS)
    return [n for n in names if pattern is None or pattern in n]


def get_constructor(name: str) -> Callable[..., nn.Module]:
    """The constructor registered under ``name``; a ValueError lists the known names."""
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}"
        ) from None


def create(
    name: str,
    num_classes: int = 10,
    width: float = 1.0,
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    **kw,
) -> nn.Module:
    """Build a registered model with random weights.

    Args:
        name: a name from :func:`list_models`.
        num_classes: size of the classifier output.
        width: channel multiplier (zoo models only; torchvision models accept 1.0 only).
        mean, std: per-channel normalisation of the data set. When given, the model is wrapped as
            ``Sequential(normalize=Normalize(mean, std), net=model)`` so that it classifies raw
            ``[0, 1]`` images and the normalisation travels with its state dict.
        **kw: extra arguments of the constructor (for example ``in_channels``).
    """
    from snncal.ann.models.layers import with_normalize

    model = get_constructor(name)(num_classes=num_classes, width=width, **kw)
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise ValueError("give both mean and std, or neither")
        model = with_normalize(model, mean, std)
    return model
