"""Pascal VOC2012 semantic segmentation (the library behind ``python -m transfer.cli.voc_seg``).

Fine-tunes an FCN-32s-style segmenter on the colorization trunk (``head_layer``; ``train_from`` on trains) on
``data.train_set`` of VOC``data.year`` and scores mIoU over background and the classes on ``data.test_set``
(VOC's 255 void pixels never scored). Without ``data.root`` (DATA) it runs on a tiny generated VOC2012. Appends
one row (task "voc-seg") to the results store and writes ``runs/voc-seg-<run>/``.
"""

from __future__ import annotations

import logging
from typing import Any

from lit_colorization.runtime.resumption import fit_resumable
from transfer.voc.classification import default_head_layer
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
from transfer.voc.dataset import VOCSegmentationDataset
from transfer.voc.segmentation import FCNSegmenter, VOCSegmentationModule, segmentation_train_transform
from transfer.voc.sources import Indexed, resolve_voc_seg_source
from transfer.voc.voc_config import VOCSegConfig

TASK = "voc-seg"
BACKGROUND = "background"
# Whole test images of different sizes: one per batch, so none is padded and every prediction sees its own image.
TEST_BATCH_SIZE = 1
log = logging.getLogger(__name__)


def segment(config: VOCSegConfig) -> dict[str, Any]:
    """Run the VOC segmentation benchmark ``config`` describes; returns the row appended to the results store."""
    data = config.data
    network, source, voc = load_trunk(config, resolve_voc_seg_source)
    layer = config.head_layer or default_head_layer(network)
    with started_run(
        config, TASK, f"{source.pretrain_run}-fcn-{layer}-{config.train_from}", source, voc, head_layer=layer
    ) as run:
        run_dir, logger = run.run_dir, run.logger
        log.info(
            "VOC segmentation (FCN on %s, from %s) of %s %s from %s on %s",
            layer,
            config.train_from,
            source.model_name,
            source.pretrain_run,
            source.ckpt,
            voc.label,
        )
        train = VOCSegmentationDataset(
            voc.root,
            data.year,
            data.train_set,
            classes=voc.classes,
            transforms=segmentation_train_transform(config.image.crop),
        )
        test = Indexed(VOCSegmentationDataset(voc.root, data.year, data.test_set, classes=voc.classes))
        if config.rescale:
            rescale_trunk_(network, train, config.trainer.seed)
        test_loader = data_loader(test, TEST_BATCH_SIZE, data.num_workers, shuffle=False)
        num_classes = len(voc.classes) + 1
        segmenter = FCNSegmenter(network, layer, config.train_from, num_classes)
        module = VOCSegmentationModule(segmenter, num_classes, config.optim)
        trainer = build_trainer(config.trainer, run_dir, logger)
        periodic = test_loader if config.trainer.val_check_interval is not None else None
        training = train_data(train, config, data.batch_size, periodic=periodic)
        fit_resumable(trainer, module, run.resume, datamodule=training)
        module.recorded = {}
        trainer.validate(module, dataloaders=test_loader, verbose=False)
        save_test_predictions(run_dir, module.recorded, trainer.global_rank, trainer.world_size)
        result = module.last_result

        names = [BACKGROUND, *voc.classes]
        row = {
            **base_row(config, TASK, run_dir, source, voc),
            "layer": layer,
            # Not the release's FCN-AlexNet on VOC2011+SBD scored on seg11valid (docs/reference.md section 11.6).
            "protocol": "project-fcn",
            "geometry": "training",
            "ap_metric": None,  # scored by mean IoU, not AP
            "train_from": config.train_from,
            "trainable_layers": list(segmenter.trainable_layers),
            "head": f"FCN-32s: 1x1 conv on {layer}, bilinear upsampling",
            "crop": config.image.crop,
            "steps": trainer.global_step,
            "num_test_images": result.num_images,
            "miou": percent(result.miou),
            "pixel_accuracy": percent(result.pixel_accuracy),
            "iou": per_class_ap(names, result.per_class),
        }
        log_per_class(logger, names, result.per_class, step=trainer.global_step, metric="iou")
        scored = sum(value is not None for value in row["iou"].values())
        publish_and_print(
            [row],
            run_dir,
            config.results,
            f"VOC{data.year[2:]} segmentation (FCN on {layer}, from {config.train_from}) of {source.pretrain_run} "
            f"({source.model_name}) on {voc.label}:",
            [
                f"mIoU {100 * result.miou:.2f} over the {scored} of {len(names)} classes present or predicted, "
                f"pixel accuracy {100 * result.pixel_accuracy:.2f}"
            ],
        )
        return row
