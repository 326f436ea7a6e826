"""Pascal VOC07 detection (the library behind ``python -m transfer.cli.voc_det``).

Trains torchvision's Faster R-CNN on the colorization trunk (``detector.backbone_layer``, frozen or fine-tuned
per ``detector.freeze_backbone``), its box head per ``protocol`` (``faster-rcnn-fc67``: the pretrained fc6/fc7 on
6 x 6 RoI max pooling of the folded standard AlexNet's conv5, as Fast R-CNN; ``faster-rcnn-mlp``: a new MLP;
docs/voc_protocols.md), on VOC trainval (``data.train_years``: 2007, or 2007 and 2012) and evaluates
on VOC07 test: mAP at IoU 0.5 by the VOC07 devkit's 11-point rule (the paper's metric, ``map``) and by
torchmetrics (``map_torchmetrics``). Without ``data.root`` (DATA) it runs on a tiny generated VOC. Appends one
row (task "voc-det") to the results store and writes ``runs/voc-det-<run>/``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from typing import Any

from torchvision.transforms import v2

from lit_colorization.config.loading import to_container
from lit_colorization.models import ColorizationNet
from transfer.voc.common import (
    base_row,
    data_loader,
    fit_and_score,
    load_trunk,
    log_per_class,
    per_class_ap,
    percent,
    publish_and_print,
    rescale_trunk_,
    started_run,
)
from transfer.voc.dataset import VOCDetectionDataset, collate_detection
from transfer.voc.detection import (
    BACKGROUND_IOU_LOW,
    CONV5_STRIDE,
    FAST_RCNN_LAYER,
    FAST_RCNN_TRAIN_FROM,
    FC67_PROTOCOL,
    FOREGROUND_FRACTION,
    FOREGROUND_IOU,
    MLP_PROTOCOL,
    ROI_POOL_SIZE,
    ROIS_PER_IMAGE,
    TEST_NMS,
    VOCDetectionModule,
    build_detector,
    build_fast_rcnn_detector,
    collate_indexed_detection,
    default_backbone_layer,
)
from transfer.voc.rescale import release_rescale_
from transfer.voc.sources import TEST_YEAR, Indexed, training_set
from transfer.voc.voc_config import DetectorConfig, DetOptimConfig, VOCDetConfig

TASK = "voc-det"
FAST_RCNN_BIAS_LR_MULT = 2.0  # every bias of Fast R-CNN's CaffeNet: lr_mult 2, decay_mult 0
log = logging.getLogger(__name__)


def detection_protocol(config: VOCDetConfig, network: ColorizationNet) -> str:
    """``protocol``, or the network's own: faster-rcnn-fc67 for an AlexNet (whose fc6/fc7 can be the box head),
    faster-rcnn-mlp for the others. Refuses fc67 for a network without them, or on another layer than conv5."""
    protocol = config.protocol or (FC67_PROTOCOL if network.model_name == "alexnet" else MLP_PROTOCOL)
    if protocol == FC67_PROTOCOL and network.model_name != "alexnet":
        raise ValueError(
            f"config key 'protocol': {FC67_PROTOCOL} needs the AlexNet's fc6/fc7, model "
            f"{network.model_name!r} has none in that form; use protocol={MLP_PROTOCOL}"
        )
    layer = config.detector.backbone_layer
    if protocol == FC67_PROTOCOL and layer not in (None, FAST_RCNN_LAYER):
        raise ValueError(
            f"config key 'detector.backbone_layer': {FC67_PROTOCOL} pools RoIs of {FAST_RCNN_LAYER} (fc6's input), "
            f"got {layer!r}"
        )
    return protocol


def protocol_optim(config: VOCDetConfig, protocol: str) -> DetOptimConfig:
    """``optim`` with its null bias keys set to the protocol's: fc67 biases at lr x2 without weight decay (Fast
    R-CNN's lr_mult / decay_mult), mlp biases as the weights."""
    optim = DetOptimConfig(**to_container(config.optim))
    fc67 = protocol == FC67_PROTOCOL
    return replace(
        optim,
        bias_lr_mult=optim.bias_lr_mult or (FAST_RCNN_BIAS_LR_MULT if fc67 else 1.0),
        bias_weight_decay=optim.bias_weight_decay
        if optim.bias_weight_decay is not None
        else (0.0 if fc67 else None),
    )


def detect(config: VOCDetConfig) -> dict[str, Any]:
    """Run the VOC detection benchmark ``config`` describes; returns the row appended to the results store."""
    data, detector_config = config.data, config.detector
    network, source, voc = load_trunk(config, standard_geometry=config.protocol != MLP_PROTOCOL)
    protocol = detection_protocol(config, network)
    fc67 = protocol == FC67_PROTOCOL
    layer = FAST_RCNN_LAYER if fc67 else detector_config.backbone_layer or default_backbone_layer(network)
    frozen = "-frozen" if detector_config.freeze_backbone else ""
    optim = protocol_optim(config, protocol)
    with started_run(
        config,
        TASK,
        f"{source.pretrain_run}{'-fc67' if fc67 else ''}-{layer}{frozen}",
        source,
        voc,
        protocol=protocol,
        detector={**to_container(detector_config), "backbone_layer": layer},
        optim=asdict(optim),
    ) as run:
        run_dir, logger = run.run_dir, run.logger
        log.info(
            "VOC detection (%s) on %s %s (%s) from %s on %s",
            protocol,
            source.model_name,
            layer,
            source.pretrain_run,
            source.ckpt,
            voc.label,
        )

        # Horizontal flips are the only augmentation, as in Fast R-CNN; torchvision's transform rescales images.
        train = training_set(voc, data, VOCDetectionDataset, transforms=v2.RandomHorizontalFlip())
        test = Indexed(VOCDetectionDataset(voc.root, TEST_YEAR, data.test_set, classes=voc.classes))
        rescaled: dict[str, Any] = {}
        if config.rescale and fc67:
            # The folded standard network rescaled as voc-cls kraehenbuehl16 does (the release's nobn_fc_rs).
            rescaled = release_rescale_(network, train, config.trainer.seed, config.rescale_images)
        elif config.rescale:
            if config.rescale_images is not None:
                raise ValueError(
                    f"config key 'rescale_images': protocol {protocol} rescales on VOC images; the release's "
                    "rescaling on ImageNet crops is faster-rcnn-fc67's (an AlexNet)"
                )
            rescale_trunk_(network, train, config.trainer.seed)
        test_loader = data_loader(
            test, data.batch_size, data.num_workers, shuffle=False, collate_fn=collate_indexed_detection
        )
        build = build_fast_rcnn_detector if fc67 else build_detector
        detector = build(network, len(voc.classes), detector_config)
        module = VOCDetectionModule(detector, optim)
        result, trainer = fit_and_score(config, run, module, train, test_loader, collate_fn=collate_detection)

        per_class = [result.per_class.get(label, float("nan")) for label in range(1, len(voc.classes) + 1)]
        ap = per_class_ap(voc.classes, per_class)
        protocol_fields = fc67_fields(detector_config) if fc67 else mlp_fields(detector_config, layer)
        row = {
            **base_row(config, TASK, run_dir, source, voc),
            "layer": layer,
            "freeze_backbone": detector_config.freeze_backbone,
            "protocol": protocol,
            "detector": "faster-rcnn",
            **protocol_fields,
            **rescaled,
            "min_size": detector_config.min_size,
            "max_size": detector_config.max_size,
            "train_sizes": list(detector_config.train_sizes),
            "train_max_size": detector_config.train_max_size,
            "bias_lr_mult": optim.bias_lr_mult,
            "steps": trainer.global_step,
            "num_test_images": result.num_images,
            "ap_metric": "11pt",
            "map": percent(result.map),
            "map_torchmetrics": percent(result.map_torchmetrics),
            "ap": ap,
        }
        log_per_class(logger, voc.classes, per_class, step=trainer.global_step)
        head = "fc6-fc7" if fc67 else "new MLP"
        publish_and_print(
            [row],
            run_dir,
            config.results,
            f"VOC07 detection ({protocol}: Faster R-CNN, {head} head on {layer}) of {source.pretrain_run} "
            f"({source.model_name}) on {voc.label}:",
            [
                f"mAP@0.5 {100 * result.map:.2f} (VOC07 11-point), {100 * result.map_torchmetrics:.2f} (torchmetrics)"
            ],
        )
        return row


def fc67_fields(detector: DetectorConfig) -> dict[str, Any]:
    """What a faster-rcnn-fc67 row says of its network and head (docs/reference.md section 11.7)."""
    return {
        # The paper's Fast R-CNN on selective-search proposals, with an RPN proposing instead.
        "geometry": "standard",
        "head": "fc6-fc7",
        "proposals": "rpn (the paper: selective search)",
        "roi_pool": f"max {ROI_POOL_SIZE}x{ROI_POOL_SIZE} on {FAST_RCNN_LAYER} at 1/{CONV5_STRIDE}",
        "rois_per_image": ROIS_PER_IMAGE,
        "foreground": f"{FOREGROUND_FRACTION:g} at IoU >= {FOREGROUND_IOU:g}, background [{BACKGROUND_IOU_LOW:g}, {FOREGROUND_IOU:g})",
        "nms": TEST_NMS,
        "train_from": FAST_RCNN_TRAIN_FROM,
    }


def mlp_fields(detector: DetectorConfig, layer: str) -> dict[str, Any]:
    """What a faster-rcnn-mlp row says of its network and head."""
    return {
        # Not the paper's Fast R-CNN, whose box head is the pretrained fc6/fc7 (docs/reference.md section 11.7):
        # here a new 2-layer MLP on RoI-aligned features of the backbone layer, so fc6/fc7 do not transfer.
        "geometry": "training",
        "head": f"new 2 x {detector.representation_size} MLP on {layer} (not the pretrained fc6/fc7)",
    }
