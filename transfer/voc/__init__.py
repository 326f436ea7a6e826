"""Pascal VOC data and evaluation for the transfer benchmarks.

The names below load on first use, so that importing ``transfer.voc.voc_config`` (a config schema) does not import
torch. ``transfer.voc.synthetic`` (tiny dataset generator, also a CLI) is not among them so that
``python -m transfer.voc.synthetic`` runs it fresh.
"""

from __future__ import annotations

from lit_colorization.lazy import lazy_attributes

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

__getattr__ = lazy_attributes(__name__, _HOMES)
