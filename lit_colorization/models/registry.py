"""The networks by name (timm-style): ``@register_model("name")`` on a ColorizationNet subclass, ``create_model``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from lit_colorization.models.base import ColorizationNet
from lit_colorization.registry import Registry

NetClass = TypeVar("NetClass", bound=type[ColorizationNet])

MODELS: Registry[type[ColorizationNet]] = Registry("model")


def register_model(name: str) -> Callable[[NetClass], NetClass]:
    """Class decorator registering a ColorizationNet subclass under ``name`` (and recording it as its model_name)."""

    def decorate(cls: NetClass) -> NetClass:
        if not (isinstance(cls, type) and issubclass(cls, ColorizationNet)):
            raise TypeError(f"register_model({name!r}) expects a ColorizationNet subclass, got {cls!r}")
        cls.model_name = name
        return MODELS.register(name, cls)

    return decorate


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return MODELS.names()


def create_model(name: str, **kwargs: Any) -> ColorizationNet:
    """Build the network registered as ``name`` with its keyword arguments (never loads pretrained weights)."""
    cls = MODELS.get(name)
    accepted = list(inspect.signature(cls.__init__).parameters)[1:]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} got unknown argument(s) {unknown}; it accepts {accepted}")
    return cls(**kwargs)
