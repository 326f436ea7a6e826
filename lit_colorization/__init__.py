"""Colorization as self-supervised learning (Zhang, Isola, Efros, ECCV 2016); docs/architecture.md maps its packages."""

__all__ = [
    "cli",
    "color",
    "config",
    "data",
    "evaluation",
    "inference",
    "models",
    "online_eval",
    "pretrain",
    "runtime",
    "store",
    "study",
    "logs",
    "registry",
    "stats",
]
