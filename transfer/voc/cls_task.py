"""Pascal VOC07 classification (the library behind ``python -m transfer.cli.voc_cls``).

``protocol=finetune`` (default) fine-tunes the pretrained trunk from ``train_from`` on (``conv1``: all layers,
``fc6``: fc6-8) with a new global-average-pool + linear head and reports 10-crop mAP on VOC07 test;
``protocol=svm`` trains per-class linear SVMs on frozen ``svm.layer`` features pooled as goyal19's linear probe
pools them (an AlexNet in the standard geometry; transfer/voc/svm.py); adding ``low_shot=true`` runs
Goyal et al.'s low-shot SVMs instead (``transfer.voc.low_shot``), one row (task "voc-svm-low-shot") per k and a
plot of mAP against k in the run folder. Without ``data.root`` (DATA) it runs on a tiny generated VOC. Appends one
row (task "voc-cls") to the results store and writes ``runs/voc-cls-<run>/``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_colorization.models import ColorizationNet
from transfer.trunk import BackboneSource, Trunk
from transfer.voc.classification import VOCClassificationModule, VOCClassifier, default_head_layer
from transfer.voc.common import (
    base_row,
    build_trainer,
    data_loader,
    feature_device,
    load_trunk,
    log_per_class,
    per_class_ap,
    percent,
    publish_and_print,
    rescale_trunk_,
    save_test_predictions,
    start_run,
)
from transfer.voc.dataset import VOCClassification
from transfer.voc.low_shot import low_shot_svms, plot_low_shot, save_low_shot
from transfer.voc.sources import (
    NUM_TEST_VIEWS,
    TEST_YEAR,
    Indexed,
    TenCropTransform,
    VOCSource,
    centre_crop_transform,
    classification_train_transform,
    training_set,
)
from transfer.voc.svm import (
    FeatureSet,
    SVMFeatures,
    default_svm_layer,
    evaluate_svms,
    extract_features,
    svm_features,
)
from transfer.voc.voc_config import VOCClsConfig

TASK = "voc-cls"
LOW_SHOT_TASK = "voc-svm-low-shot"
log = logging.getLogger(__name__)


def finetune(
    config: VOCClsConfig,
    network: ColorizationNet,
    voc: VOCSource,
    head_layer: str,
    logger: Logger | bool,
    run_dir: Path,
) -> tuple[dict[str, Any], float, list[float]]:
    """Fine-tune and evaluate; returns (row fields, mAP, per-class AP)."""
    data, image = config.data, config.image
    train = training_set(
        voc, data, VOCClassification, transform=classification_train_transform(image.resize, image.crop)
    )
    test = Indexed(
        VOCClassification(
            voc.root,
            TEST_YEAR,
            data.test_set,
            classes=voc.classes,
            transform=TenCropTransform(image.resize, image.crop),
        )
    )
    train_loader = data_loader(train, data.batch_size, data.num_workers, shuffle=True)
    test_loader = data_loader(test, data.batch_size, data.num_workers, shuffle=False)
    if config.rescale:
        rescale_trunk_(network, train, config.trainer.seed)
    classifier = VOCClassifier(network, head_layer, config.train_from, len(voc.classes))
    module = VOCClassificationModule(classifier, config.optim, use_07_metric=config.ap_metric == "voc07")
    trainer = build_trainer(config.trainer, run_dir, logger)
    periodic = test_loader if config.trainer.val_check_interval is not None else None
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=periodic)
    module.recorded = []
    trainer.validate(module, dataloaders=test_loader, verbose=False)
    save_test_predictions(run_dir, module.recorded_arrays(), trainer.global_rank, trainer.world_size)
    result = module.last_result
    fields = {
        "protocol": "finetune",
        "train_from": config.train_from,
        "layer": head_layer,
        "trainable_layers": list(classifier.trainable_layers),
        "head": "global average pool + linear",
        "test_views": NUM_TEST_VIEWS,
        "crop": image.crop,
        "steps": trainer.global_step,
        "num_test_images": result.num_images,
    }
    return fields, result.map, result.per_class


def svm_trunk(config: VOCClsConfig, network: ColorizationNet, layer: str) -> tuple[Trunk, SVMFeatures]:
    """The frozen trunk on the feature device and how its ``layer`` is pooled (checked before the run starts)."""
    backbone = Trunk(network.to(feature_device(config.trainer.accelerator)), [layer])
    return backbone, svm_features(backbone, layer, config.image.crop)


def svm_feature_sets(
    config: VOCClsConfig, backbone: Trunk, pooling: SVMFeatures, voc: VOCSource, layer: str
) -> tuple[FeatureSet, FeatureSet]:
    """Frozen, pooled ``layer`` features of the training and test images (central crops): what every SVM
    protocol fits."""
    data, image = config.data, config.image
    device = next(backbone.parameters()).device
    pool = pooling.probe.reduction.module()
    transform = centre_crop_transform(image.resize, image.crop)
    train = training_set(voc, data, VOCClassification, transform=transform)
    test = VOCClassification(voc.root, TEST_YEAR, data.test_set, classes=voc.classes, transform=transform)
    train_features = extract_features(
        backbone, layer, data_loader(train, data.batch_size, data.num_workers, shuffle=False), device, pool
    )
    test_features = extract_features(
        backbone, layer, data_loader(test, data.batch_size, data.num_workers, shuffle=False), device, pool
    )
    return train_features, test_features


def svm_protocol(
    config: VOCClsConfig,
    backbone: Trunk,
    pooling: SVMFeatures,
    voc: VOCSource,
    layer: str,
    logger: Logger | bool,
    run_dir: Path,
) -> tuple[dict[str, Any], float, list[float]]:
    """Frozen features, per-class SVMs; returns (row fields, mAP, per-class AP)."""
    image, svm = config.image, config.svm
    train_features, test_features = svm_feature_sets(config, backbone, pooling, voc, layer)
    log.info(
        "training %d per-class SVMs on %d x %d features", len(voc.classes), *train_features.features.shape
    )
    result = evaluate_svms(
        train_features,
        test_features,
        list(svm.costs),
        svm.folds,
        svm.positive_weight,
        svm.max_iter,
        use_07_metric=config.ap_metric == "voc07",
        seed=config.trainer.seed,
    )
    if logger:
        logger.log_metrics({"voc/map": result.map}, step=0)
    if rank_zero_only.rank == 0:
        save_test_predictions(
            run_dir,
            {
                "index": np.arange(len(result.scores)),
                "scores": result.scores,
                "targets": test_features.targets,
                "ignore": test_features.ignore,
            },
        )
    fields = {
        "protocol": "svm",
        "train_from": None,
        "layer": layer,
        "features": pooling.probe.label,
        "reduction": pooling.probe.reduction.describe(),
        "feature_shape": list(pooling.feature_shape),
        "pooled_shape": list(pooling.pooled_shape),
        "feature_dim": result.feature_dim,
        "crop": image.crop,
        "svm_cost": {name: one.cost for name, one in zip(voc.classes, result.svms, strict=True)},
        "num_test_images": len(test_features.features),
    }
    return fields, result.map, result.per_class


def low_shot_protocol(
    config: VOCClsConfig,
    backbone: Trunk,
    pooling: SVMFeatures,
    voc: VOCSource,
    layer: str,
    logger: Logger | bool,
    run_dir: Path,
) -> list[dict[str, Any]]:
    """Low-shot SVMs (``transfer.voc.low_shot``) for every k of ``svm.low_shot_k``; returns one row's own
    fields per k and writes the mAP-against-k plot to the run folder."""
    svm = config.svm
    train_features, test_features = svm_feature_sets(config, backbone, pooling, voc, layer)
    log.info(
        "low-shot SVMs: k in %s, %d draws each, %d costs, on %d x %d features",
        list(svm.low_shot_k),
        svm.low_shot_samples,
        len(svm.costs),
        *train_features.features.shape,
    )
    results = low_shot_svms(
        train_features,
        test_features,
        list(svm.low_shot_k),
        svm.low_shot_samples,
        list(svm.costs),
        svm.positive_weight,
        svm.max_iter,
        use_07_metric=config.ap_metric == "voc07",
        seed=config.trainer.seed,
    )
    rows = []
    for result in results:
        wanted = {"positive": result.k, "negative": (len(voc.classes) - 1) * result.k}
        for kind, used_counts in (("positive", result.positives_used), ("negative", result.negatives_used)):
            short = {
                name: used for name, used in zip(voc.classes, used_counts, strict=True) if used < wanted[kind]
            }
            if short:
                log.warning(
                    "low-shot k=%d: %d classes have fewer than %d %s training images (%s); they trained on all "
                    "of theirs (k_effective %d)",
                    result.k,
                    len(short),
                    wanted[kind],
                    kind,
                    ", ".join(f"{name} {used}" for name, used in short.items()),
                    result.k_effective,
                )
        rows.append(
            {
                "protocol": "svm",
                "low_shot": True,
                "layer": layer,
                "features": pooling.probe.label,
                "feature_dim": int(train_features.features.shape[1]),
                "crop": config.image.crop,
                "num_test_images": len(test_features.features),
                "k": result.k,
                "k_effective": result.k_effective,
                "complete": result.complete,
                "positives_used": dict(zip(voc.classes, result.positives_used, strict=True)),
                "negatives_used": dict(zip(voc.classes, result.negatives_used, strict=True)),
                "samples": len(result.map_per_draw),
                "svm_cost": result.cost,
                "map": percent(result.map),
                "map_std": percent(result.map_std),
                "map_per_sample": [percent(value) for value in result.map_per_draw],
                "map_by_cost": {f"{cost:g}": percent(value) for cost, value in result.map_by_cost.items()},
            }
        )
        if logger:
            logger.log_metrics(
                {"voc/low_shot_map": result.map, "voc/low_shot_map_std": result.map_std}, step=result.k
            )
    if rank_zero_only.rank == 0:
        save_low_shot(results, train_features, test_features, run_dir, svm.save_features)
        title = (
            f"{backbone.network.model_name} {layer}: low-shot VOC07 SVMs, {svm.low_shot_samples} draws per k "
            f"({voc.label})"
        )
        plot_low_shot(results, title, run_dir / f"low_shot_{layer}.png")
    return rows


def classify(config: VOCClsConfig) -> dict[str, Any] | list[dict[str, Any]]:
    """Run the VOC classification benchmark ``config`` describes; returns the row appended to the results store
    (with ``low_shot``, the rows: one per k)."""
    # The SVMs pool as goyal19 does, on an AlexNet in the standard geometry it assumes.
    network, source, voc = load_trunk(config, standard_geometry=config.protocol == "svm")
    if config.protocol == "svm":
        layer = config.svm.layer or default_svm_layer(source.model_name)
        label = f"svm-low-shot-{layer}" if config.low_shot else f"svm-{layer}"
        backbone, pooling = svm_trunk(config, network, layer)
    else:
        layer = config.head_layer or default_head_layer(network)
        label = f"finetune-{config.train_from}"
    run_dir, logger = start_run(config, TASK, f"{source.pretrain_run}-{label}", source, voc)
    log.info(
        "VOC classification (%s) of %s %s from %s on %s",
        label,
        source.model_name,
        source.pretrain_run,
        source.ckpt,
        voc.label,
    )
    if config.low_shot:
        return classify_low_shot(config, backbone, pooling, voc, layer, logger, run_dir, source)
    if config.protocol == "svm":
        fields, mean_ap, per_class = svm_protocol(config, backbone, pooling, voc, layer, logger, run_dir)
    else:
        fields, mean_ap, per_class = finetune(config, network, voc, layer, logger, run_dir)
    ap = per_class_ap(voc.classes, per_class)
    row = {
        **base_row(config, TASK, run_dir, source, voc),
        **fields,
        "ap_metric": config.ap_metric,
        "map": percent(mean_ap),
        "ap": ap,
    }
    log_per_class(logger, voc.classes, per_class, step=int(fields.get("steps", 0)))
    publish_and_print(
        [row],
        run_dir,
        config.results,
        f"VOC07 classification ({label}) of {source.pretrain_run} ({source.model_name}) on {voc.label}:",
        [f"mAP {100 * mean_ap:.2f} ({config.ap_metric})"],
    )
    return row


def classify_low_shot(
    config: VOCClsConfig,
    backbone: Trunk,
    pooling: SVMFeatures,
    voc: VOCSource,
    layer: str,
    logger: Logger | bool,
    run_dir: Path,
    source: BackboneSource,
) -> list[dict[str, Any]]:
    """The low-shot SVM protocol end to end: its rows (task "voc-svm-low-shot", one per k) published."""
    rows = [
        {**base_row(config, LOW_SHOT_TASK, run_dir, source, voc), **fields, "ap_metric": config.ap_metric}
        for fields in low_shot_protocol(config, backbone, pooling, voc, layer, logger, run_dir)
    ]
    lines = []
    for row in rows:
        note = "" if row["complete"] else f"  (incomplete draws, k_effective {row['k_effective']})"
        lines.append(
            f"k={row['k']:>3}  mAP {row['map']:6.2f} +- {row['map_std']:5.2f} over {row['samples']} draws "
            f"(cost {row['svm_cost']:g}){note}"
        )
    publish_and_print(
        rows,
        run_dir,
        config.results,
        f"VOC07 low-shot SVMs on {layer} of {source.pretrain_run} ({source.model_name}) on {voc.label}:",
        lines,
    )
    return rows
