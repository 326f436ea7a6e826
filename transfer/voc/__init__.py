"""Pascal VOC data and evaluation for the transfer benchmarks.

The names below load on first use, so that importing ``transfer.voc.voc_config`` (a config schema) does not import
torch. ``transfer.voc.synthetic`` (tiny dataset generator, also a CLI) is not among them so that
``python -m transfer.voc.synthetic`` runs it fresh.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "VOC_CLASSES": "dataset",
    "VOCClassification": "dataset",
    "VOCDetectionDataset": "dataset",
    "collate_detection": "dataset",
    "classification_map": "evaluation",
    "detection_map": "evaluation",
    "torchmetrics_detection_map": "evaluation",
    "voc_ap_11point": "evaluation",
    "voc_ap_area": "evaluation",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` when it is first asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module 'transfer.voc' has no attribute {name!r}")
    return getattr(import_module(f"transfer.voc.{_HOMES[name]}"), name)
