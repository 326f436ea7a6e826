"""Colorization networks behind a timm-style registry: ``create_model(name, **kwargs)``, ``list_models()``."""

from lit_colorization.models import alexnet, eccv16, resnet  # noqa: F401  (importing registers the networks)
from lit_colorization.models.base import ColorizationNet
from lit_colorization.models.registry import create_model, list_models, register_model

__all__ = ["ColorizationNet", "create_model", "list_models", "register_model"]
