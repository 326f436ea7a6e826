"""Pascal VOC data and evaluation for the transfer benchmarks.

``transfer.voc.synthetic`` (tiny dataset generator, also a CLI) is not imported here so that
``python -m transfer.voc.synthetic`` runs it fresh.
"""

from transfer.voc.dataset import VOC_CLASSES, VOCClassification, VOCDetectionDataset, collate_detection
from transfer.voc.evaluation import (
    classification_map,
    detection_map,
    torchmetrics_detection_map,
    voc_ap_11point,
    voc_ap_area,
)

__all__ = [
    "VOC_CLASSES",
    "VOCClassification",
    "VOCDetectionDataset",
    "classification_map",
    "collate_detection",
    "detection_map",
    "torchmetrics_detection_map",
    "voc_ap_11point",
    "voc_ap_area",
]
