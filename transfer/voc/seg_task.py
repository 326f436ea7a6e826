"""Pascal VOC semantic segmentation (the library behind ``python -m transfer.cli.voc_seg``).

Two protocols (docs/voc_protocols.md; ``protocol``, null: release for alexnet, project-fcn otherwise):

- ``release``: the release's FCN-AlexNet (transfer/voc/fcn_alexnet.py) on the folded, rescaled standard AlexNet,
  trained on VOC2011 segmentation train + SBD train, whole images one at a time, ``optim.iter_size`` of them per
  step, scored by mIoU on seg11valid (transfer/voc/sbd.py; docs/reference.md section 11.6).
- ``project-fcn``: this project's FCN-32s-style segmenter on the colorization trunk (``head_layer``; ``train_from``
  on trains) on ``data.train_set`` of VOC``data.year``, scored on ``data.test_set``.

Both score mIoU over background and the classes, VOC's 255 void pixels never scored. Without ``data.root`` (DATA)
they run on a tiny generated VOC (VOC2011 + SBD, or VOC2012). Appends one row (task "voc-seg") to the results
store and writes ``runs/voc-seg-<run>/``.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from torch import nn

from transfer.runs import resolve_ckpt
from transfer.trunk import in_standard_geometry, load_network
from transfer.voc.classification import default_head_layer
from transfer.voc.common import (
    StartedRun,
    base_row,
    data_loader,
    fit_and_score,
    log_per_class,
    per_class_ap,
    percent,
    publish_and_print,
    rescale_trunk_,
    started_run,
)
from transfer.voc.dataset import VOCSegmentationDataset
from transfer.voc.fcn_alexnet import AB_SCALE, ALIGNED_CROP_OFFSET, FCNAlexNet
from transfer.voc.rescale import release_rescale_
from transfer.voc.sbd import SegmentationList, release_lists
from transfer.voc.segmentation import (
    FCNSegmenter,
    SegmentationResult,
    VOCSegmentationModule,
    segmentation_train_transform,
)
from transfer.voc.sources import Indexed, VOCSource, resolve_release_seg_source, resolve_voc_seg_source
from transfer.voc.voc_config import VOCSegConfig, resolve_seg_protocol

TASK = "voc-seg"
BACKGROUND = "background"
# Whole test images of different sizes: one per batch, so none is padded and every prediction sees its own image.
TEST_BATCH_SIZE = 1
log = logging.getLogger(__name__)


def project_fcn(
    config: VOCSegConfig, network: nn.Module, voc: VOCSource, run: StartedRun, layer: str
) -> tuple[dict[str, Any], SegmentationResult]:
    """This project's FCN head on the trunk; (row fields, result)."""
    data = config.data
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
    num_classes = len(voc.classes) + 1
    segmenter = FCNSegmenter(network, layer, config.train_from, num_classes)
    module = VOCSegmentationModule(segmenter, num_classes, config.optim)
    test_loader = data_loader(test, TEST_BATCH_SIZE, config.data.num_workers, shuffle=False)
    result, trainer = fit_and_score(
        config, run, module, train, test_loader, accumulate_grad_batches=config.optim.iter_size
    )
    fields = {
        "layer": layer,
        # Not the release's FCN-AlexNet on VOC2011+SBD scored on seg11valid (docs/reference.md section 11.6).
        "protocol": "project-fcn",
        "geometry": "training",
        "train_from": config.train_from,
        "trainable_layers": list(segmenter.trainable_layers),
        "head": f"FCN-32s: 1x1 conv on {layer}, bilinear upsampling",
        "crop": config.image.crop,
        "steps": trainer.global_step,
    }
    return fields, result


def release(
    config: VOCSegConfig, network: nn.Module, voc: VOCSource, run: StartedRun
) -> tuple[dict[str, Any], SegmentationResult]:
    """The release's FCN-AlexNet on VOC2011 train + SBD train, scored on seg11valid; (row fields, result)."""
    lists = release_lists(voc.root, voc.sbd_root)  # type: ignore[attr-defined]
    log.info("release lists: %s", lists.counts)
    train = SegmentationList(lists.train, voc.classes)
    test = Indexed(SegmentationList(lists.seg11valid, voc.classes))
    rescaled = (
        release_rescale_(network, train, config.trainer.seed, config.rescale_images) if config.rescale else {}
    )
    num_classes = len(voc.classes) + 1
    segmenter = FCNAlexNet(network, num_classes, config.colour_branch, config.crop_offset)
    module = VOCSegmentationModule(segmenter, num_classes, config.optim)
    test_loader = data_loader(test, TEST_BATCH_SIZE, config.data.num_workers, shuffle=False)
    result, trainer = fit_and_score(
        config, run, module, train, test_loader, accumulate_grad_batches=config.optim.iter_size
    )
    fields = {
        "layer": "fc7",
        "protocol": "release",
        "geometry": "standard",
        "train_from": "conv1",
        "trainable_layers": list(segmenter.trainable_layers),
        "head": (
            "FCN-AlexNet: conv1 pad 100, dropout 0.5 after fc6 and fc7, score-fr 1x1 from zero, fixed bilinear "
            f"63x63 stride-32 deconvolution, crop at offset {config.crop_offset}"
        ),
        # 0: as the release's Caffe cropped, 18 pixels off the input; 18: aligned (docs/reference.md 11.6)
        "crop_offset": config.crop_offset,
        "scores_aligned": config.crop_offset == ALIGNED_CROP_OFFSET,
        "colour_branch": config.colour_branch,
        "input": f"L - 50, and conv1_ab on {AB_SCALE} (a + b)" if config.colour_branch else "L - 50",
        **rescaled,
        "train_list": "VOC2011 segmentation train + SBD train (VOC's annotation where both)",
        "test_list": "seg11valid (VOC2011 segmentation val not in SBD train)",
        **lists.counts,
        "images_per_step": config.optim.iter_size,
        "crop": None,  # whole images, no augmentation
        "steps": trainer.global_step,
    }
    return fields, result


def segment(config: VOCSegConfig) -> dict[str, Any]:
    """Run the VOC segmentation benchmark ``config`` describes; returns the row appended to the results store."""
    seed = config.trainer.seed
    L.seed_everything(seed, workers=True)
    ckpt = resolve_ckpt(config.ckpt, config.runs_dir)
    network, source = load_network(ckpt, config.model, dict(config.model_kwargs), seed=seed)
    config = resolve_seg_protocol(config, source.model_name)
    protocol = config.protocol
    if protocol == "release":
        network = in_standard_geometry(network)
        voc, layer = resolve_release_seg_source(config.data), "fc7"
        name = f"{source.pretrain_run}-release"
    else:
        voc, layer = resolve_voc_seg_source(config.data), config.head_layer or default_head_layer(network)
        name = f"{source.pretrain_run}-fcn-{layer}-{config.train_from}"
    with started_run(config, TASK, name, source, voc, head_layer=layer) as run:
        log.info(
            "VOC segmentation (%s, FCN on %s from %s) of %s %s from %s on %s",
            protocol,
            layer,
            config.train_from,
            source.model_name,
            source.pretrain_run,
            source.ckpt,
            voc.label,
        )
        if protocol == "release":
            fields, result = release(config, network, voc, run)
        else:
            fields, result = project_fcn(config, network, voc, run, layer)
        names = [BACKGROUND, *voc.classes]
        row = {
            **base_row(config, TASK, run.run_dir, source, voc),
            **fields,
            "ap_metric": None,  # scored by mean IoU, not AP
            "num_test_images": result.num_images,
            "miou": percent(result.miou),
            "pixel_accuracy": percent(result.pixel_accuracy),
            "iou": per_class_ap(names, result.per_class),
        }
        log_per_class(run.logger, names, result.per_class, step=fields["steps"], metric="iou")
        scored = sum(value is not None for value in row["iou"].values())
        what = (
            "FCN-AlexNet, VOC2011 train + SBD train"
            if protocol == "release"
            else f"FCN on {layer}, from {config.train_from}"
        )
        publish_and_print(
            [row],
            run.run_dir,
            config.results,
            f"VOC{config.data.year[2:]} segmentation ({protocol}: {what}) of {source.pretrain_run} "
            f"({source.model_name}) on {voc.label}:",
            [
                f"mIoU {100 * result.miou:.2f} over the {scored} of {len(names)} classes present or predicted, "
                f"pixel accuracy {100 * result.pixel_accuracy:.2f}"
            ],
        )
        return row
