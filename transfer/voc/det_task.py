"""Pascal VOC07 detection (the library behind ``python -m transfer.cli.voc_det``).

Trains torchvision's Faster R-CNN on the colorization trunk (``detector.backbone_layer``, frozen or fine-tuned
per ``detector.freeze_backbone``) on VOC trainval (``data.train_years``: 2007, or 2007 and 2012) and evaluates
on VOC07 test: mAP at IoU 0.5 by the VOC07 devkit's 11-point rule (the paper's metric, ``map``) and by
torchmetrics (``map_torchmetrics``). Without ``data.root`` (DATA) it runs on a tiny generated VOC. Appends one
row (task "voc-det") to the results store and writes ``runs/voc-det-<run>/``.
"""

from __future__ import annotations

import logging
from typing import Any

from torchvision.transforms import v2

from lit_colorization.config.loading import to_container
from lit_colorization.runtime.resumption import fit_resumable
from transfer.voc.common import (
    base_row,
    build_trainer,
    data_loader,
    load_trunk,
    log_per_class,
    per_class_ap,
    percent,
    publish_and_print,
    rescale_trunk_,
    save_test_predictions,
    started_run,
    train_data,
)
from transfer.voc.dataset import VOCDetectionDataset, collate_detection
from transfer.voc.detection import (
    VOCDetectionModule,
    build_detector,
    collate_indexed_detection,
    default_backbone_layer,
)
from transfer.voc.sources import TEST_YEAR, Indexed, training_set
from transfer.voc.voc_config import VOCDetConfig

TASK = "voc-det"
log = logging.getLogger(__name__)


def detect(config: VOCDetConfig) -> dict[str, Any]:
    """Run the VOC detection benchmark ``config`` describes; returns the row appended to the results store."""
    data, detector_config = config.data, config.detector
    network, source, voc = load_trunk(config)
    layer = detector_config.backbone_layer or default_backbone_layer(network)
    frozen = "-frozen" if detector_config.freeze_backbone else ""
    with started_run(
        config,
        TASK,
        f"{source.pretrain_run}-{layer}{frozen}",
        source,
        voc,
        detector={**to_container(detector_config), "backbone_layer": layer},
    ) as run:
        run_dir, logger = run.run_dir, run.logger
        log.info(
            "VOC detection on %s %s (%s) from %s on %s",
            source.model_name,
            layer,
            source.pretrain_run,
            source.ckpt,
            voc.label,
        )

        # Horizontal flips are the only augmentation, as in Fast R-CNN; torchvision's transform rescales images.
        train = training_set(voc, data, VOCDetectionDataset, transforms=v2.RandomHorizontalFlip())
        test = Indexed(VOCDetectionDataset(voc.root, TEST_YEAR, data.test_set, classes=voc.classes))
        if config.rescale:
            rescale_trunk_(network, train, config.trainer.seed)
        test_loader = data_loader(
            test, data.batch_size, data.num_workers, shuffle=False, collate_fn=collate_indexed_detection
        )
        detector = build_detector(network, len(voc.classes), detector_config)
        module = VOCDetectionModule(detector, config.optim)
        trainer = build_trainer(config.trainer, run_dir, logger)
        periodic = test_loader if config.trainer.val_check_interval is not None else None
        training = train_data(train, config, data.batch_size, collate_fn=collate_detection, periodic=periodic)
        fit_resumable(trainer, module, run.resume, datamodule=training)
        module.recorded = []
        trainer.validate(module, dataloaders=test_loader, verbose=False)
        save_test_predictions(run_dir, module.recorded_arrays(), trainer.global_rank, trainer.world_size)
        result = module.last_result

        per_class = [result.per_class.get(label, float("nan")) for label in range(1, len(voc.classes) + 1)]
        ap = per_class_ap(voc.classes, per_class)
        row = {
            **base_row(config, TASK, run_dir, source, voc),
            "layer": layer,
            "freeze_backbone": detector_config.freeze_backbone,
            # Not the paper's Fast R-CNN, whose box head is the pretrained fc6/fc7 (docs/reference.md section 11.7):
            # here a new 2-layer MLP on RoI-aligned features of the backbone layer, so fc6/fc7 do not transfer.
            "protocol": "faster-rcnn-mlp",
            "geometry": "training",
            "detector": "faster-rcnn",
            "head": f"new 2 x {detector_config.representation_size} MLP on {layer} (not the pretrained fc6/fc7)",
            "min_size": detector_config.min_size,
            "steps": trainer.global_step,
            "num_test_images": result.num_images,
            "ap_metric": "11pt",
            "map": percent(result.map),
            "map_torchmetrics": percent(result.map_torchmetrics),
            "ap": ap,
        }
        log_per_class(logger, voc.classes, per_class, step=trainer.global_step)
        publish_and_print(
            [row],
            run_dir,
            config.results,
            f"VOC07 detection (Faster R-CNN on {layer}) of {source.pretrain_run} ({source.model_name}) on {voc.label}:",
            [
                f"mAP@0.5 {100 * result.map:.2f} (VOC07 11-point), {100 * result.map_torchmetrics:.2f} (torchmetrics)"
            ],
        )
        return row
