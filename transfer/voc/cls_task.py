"""Pascal VOC07 classification (the library behind ``python -m transfer.cli.voc_cls``).

``protocol=kraehenbuehl16`` (default) is the paper's: philkr/voc-classification's fine-tuning of the folded,
rescaled standard network (docs/reference.md section 11.4), area AP. ``protocol=finetune`` is this project's
earlier recipe: the training geometry from ``train_from`` on (``conv1``: all layers, ``fc6``: fc6-8) with a new
global-average-pool + linear head, 10-crop 11-point mAP on VOC07 test;
``protocol=svm`` trains per-class linear SVMs on frozen ``svm.layer`` features of the whole image resized to
``image.crop``, pooled as goyal19's linear probe pools them (an AlexNet in the standard geometry;
transfer/voc/svm.py), area under the precision envelope; adding ``low_shot=true`` runs
Goyal et al.'s low-shot SVMs instead (``transfer.voc.low_shot``), one row (task "voc-svm-low-shot") per k and a
plot of mAP against k in the run folder. Without ``data.root`` (DATA) it runs on a tiny generated VOC. Appends one
row (task "voc-cls") to the results store and writes ``runs/voc-cls-<run>/``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch.utils.data import Dataset

from lit_colorization.config.loading import ConfigError
from lit_colorization.models import ColorizationNet
from lit_colorization.runtime.preemption import StopBetweenUnits
from lit_colorization.store.checkpoint import weights_checksum
from transfer.trunk import BackboneSource, Trunk
from transfer.voc.classification import VOCClassificationModule, VOCClassifier, default_head_layer
from transfer.voc.common import (
    StartedRun,
    base_row,
    data_loader,
    feature_device,
    fit_and_score,
    load_trunk,
    log_per_class,
    per_class_ap,
    percent,
    publish_and_print,
    rescale_trunk_,
    save_test_predictions,
    started_run,
)
from transfer.voc.dataset import VOCClassification
from transfer.voc.low_shot import low_shot_svms, plot_low_shot, save_low_shot
from transfer.voc.rescale import release_rescale_
from transfer.voc.sources import (
    NUM_TEST_VIEWS,
    TEST_YEAR,
    Indexed,
    RepeatedViews,
    ScaleJitterCrop,
    TenCropTransform,
    VOCSource,
    classification_train_transform,
    training_set,
    whole_image_transform,
)
from transfer.voc.svm import (
    FeatureSet,
    SVMFeatures,
    default_svm_layer,
    evaluate_svms,
    extract_features,
    svm_features,
)
from transfer.voc.svm_cache import FEATURES_DIR, SVMS_DIR, FeatureCache, SVMStore, keyed_folder
from transfer.voc.voc_config import VOCClsConfig, cls_ap_metric

TASK = "voc-cls"
LOW_SHOT_TASK = "voc-svm-low-shot"
log = logging.getLogger(__name__)


def finetune(
    config: VOCClsConfig, network: ColorizationNet, voc: VOCSource, head_layer: str, run: StartedRun
) -> tuple[dict[str, Any], float, list[float]]:
    """Fine-tune (continuing from the checkpoint ``resume`` if given) and evaluate; returns (row fields, mAP,
    per-class AP)."""
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
    test_loader = data_loader(test, data.batch_size, data.num_workers, shuffle=False)
    if config.rescale:
        rescale_trunk_(network, train, config.trainer.seed)
    classifier = VOCClassifier(network, head_layer, config.train_from, len(voc.classes))
    module = VOCClassificationModule(classifier, config.optim, cls_ap_metric(config))
    result, trainer = fit_and_score(config, run, module, train, test_loader)
    fields = {
        "protocol": "finetune",
        "geometry": "training",  # the network as pretrained (AlexNet: BatchNorm, padded pools, dilated fc6)
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


# philkr/voc-classification puts drop6 / drop7 (ratio 0.5) after fc6 / fc7 and a new fc8 N(0, 0.01^2), bias 0.1.
KRAEHENBUEHL16_DROPOUT = 0.5
KRAEHENBUEHL16_DROPOUT_LAYERS = ("fc6", "fc7")
KRAEHENBUEHL16_HEAD_BIAS = 0.1


def kraehenbuehl16(
    config: VOCClsConfig, network: ColorizationNet, voc: VOCSource, head_layer: str, run: StartedRun
) -> tuple[dict[str, Any], float, list[float]]:
    """philkr/voc-classification as the release ran it (docs/reference.md section 11.4) on the folded standard
    network: scale-jittered mirrored crops, dropout after fc6 and fc7, a new linear layer, the per-image summed
    sigmoid loss, SGD with biases at lr x2 and clipped gradients, ``test_views`` summed draws; returns (row
    fields, mAP, per-class AP)."""
    data, image = config.data, config.image
    views = ScaleJitterCrop(image.crop, image.min_scale, image.max_scale)
    train = training_set(voc, data, VOCClassification, transform=views)
    test = Indexed(
        VOCClassification(
            voc.root,
            TEST_YEAR,
            data.test_set,
            classes=voc.classes,
            transform=RepeatedViews(views, image.test_views),
        )
    )
    test_loader = data_loader(test, data.batch_size, data.num_workers, shuffle=False)
    rescaled = (
        release_rescale_(network, train, config.trainer.seed, config.rescale_images) if config.rescale else {}
    )
    classifier = VOCClassifier(
        network,
        head_layer,
        config.train_from,
        len(voc.classes),
        dropout=KRAEHENBUEHL16_DROPOUT,
        dropout_layers=tuple(
            name for name in KRAEHENBUEHL16_DROPOUT_LAYERS if name in network.feature_layers
        ),
        head_bias=KRAEHENBUEHL16_HEAD_BIAS,
    )
    module = VOCClassificationModule(classifier, config.optim, cls_ap_metric(config), loss_per_image=True)
    result, trainer = fit_and_score(config, run, module, train, test_loader)
    fields = {
        "protocol": "kraehenbuehl16",
        "geometry": "standard",
        "train_from": config.train_from,
        "layer": head_layer,
        "trainable_layers": list(classifier.trainable_layers),
        "head": "dropout 0.5 after fc6 and fc7, linear",
        **rescaled,
        "test_views": image.test_views,
        "crop": image.crop,
        "scale_jitter": [image.min_scale, image.max_scale],
        "steps": trainer.global_step,
        "num_test_images": result.num_images,
    }
    return fields, result.map, result.per_class


def svm_trunk(config: VOCClsConfig, network: ColorizationNet, layer: str) -> tuple[Trunk, SVMFeatures]:
    """The frozen trunk on the feature device and how its ``layer`` is pooled (checked before the run starts)."""
    backbone = Trunk(network.to(feature_device(config.trainer.accelerator)), [layer])
    return backbone, svm_features(backbone, layer, config.image.crop)


def svm_feature_sets(
    config: VOCClsConfig,
    backbone: Trunk,
    pooling: SVMFeatures,
    voc: VOCSource,
    layer: str,
    cache: SVMCache,
) -> tuple[FeatureSet, FeatureSet]:
    """Frozen, pooled ``layer`` features of the training and test images, each resized whole to
    ``image.crop`` squared as fair_self_supervision_benchmark does (docs/reference.md section 11.5): what every
    SVM protocol fits; read from ``cache`` where an earlier start extracted them, the rest extracted into it."""
    data, image = config.data, config.image
    device = next(backbone.parameters()).device
    pool = pooling.probe.reduction.module()
    transform = whole_image_transform(image.resize, image.crop)
    train = training_set(voc, data, VOCClassification, transform=transform)
    test = VOCClassification(voc.root, TEST_YEAR, data.test_set, classes=voc.classes, transform=transform)

    def extract(images: Dataset) -> FeatureSet:
        loader = data_loader(images, data.batch_size, data.num_workers, shuffle=False)
        return extract_features(backbone, layer, loader, device, pool)

    splits = {
        "train": {"years": list(data.train_years), "set": data.train_set, "images": len(train)},
        "test": {"years": [TEST_YEAR], "set": data.test_set, "images": len(test)},
    }
    train_features = cache.features(splits["train"]).features(train, extract)
    test_features = cache.features(splits["test"]).features(test, extract)
    return train_features, test_features


@dataclass(frozen=True)
class SVMCache:
    """Where an SVM job of this run keeps its features and SVMs (transfer/voc/svm_cache.py), keyed by ``key``:
    the trunk's checksum, the layer, its pooling and the images' size and source."""

    run_dir: Path
    key: dict[str, Any]
    chunk_images: int
    stop: StopBetweenUnits

    def features(self, split: dict[str, Any]) -> FeatureCache:
        folder = keyed_folder(self.run_dir / FEATURES_DIR, {**self.key, "split": split})
        return FeatureCache(folder, self.chunk_images, self.stop)

    def svms(self, settings: dict[str, Any]) -> SVMStore:
        return SVMStore(keyed_folder(self.run_dir / SVMS_DIR, {**self.key, "svm": settings}), self.stop)


def svm_cache(
    config: VOCClsConfig,
    run_dir: Path,
    backbone: Trunk,
    pooling: SVMFeatures,
    voc: VOCSource,
    layer: str,
    stop: StopBetweenUnits,
) -> SVMCache:
    """The run's SVM cache; one an earlier start left is used only with ``resume=auto`` (as a checkpoint is)."""
    if config.resume is None and ((run_dir / FEATURES_DIR).exists() or (run_dir / SVMS_DIR).exists()):
        raise ConfigError(
            f"{run_dir}: this SVM run already has cached features; continue it with RESUME=auto (resume=auto) "
            "or start a new one with another RUN"
        )
    key = {
        "trunk_checksum": weights_checksum(backbone.network),
        "model": backbone.network.model_name,
        "layer": layer,
        "features": pooling.probe.label,
        "reduction": pooling.probe.reduction.describe(),
        "resize": config.image.resize,
        "crop": config.image.crop,
        "image": "whole image resized",  # not the centre crops of caches made before docs/reference.md 11.5
        "data_root": str(voc.root),
        "classes": list(voc.classes),
    }
    return SVMCache(run_dir, key, config.svm.chunk_images, stop)


def svm_protocol(
    config: VOCClsConfig,
    backbone: Trunk,
    pooling: SVMFeatures,
    voc: VOCSource,
    layer: str,
    logger: Logger | bool,
    cache: SVMCache,
    run_dir: Path,
) -> tuple[dict[str, Any], float, list[float]]:
    """Frozen features, per-class SVMs (both kept in ``cache`` as they are made); returns (row fields, mAP,
    per-class AP)."""
    image, svm = config.image, config.svm
    train_features, test_features = svm_feature_sets(config, backbone, pooling, voc, layer, cache)
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
        ap_metric=cls_ap_metric(config),
        seed=config.trainer.seed,
        class_names=voc.classes,
        store=cache.svms(
            {
                "costs": list(svm.costs),
                "folds": svm.folds,
                "positive_weight": svm.positive_weight,
                "max_iter": svm.max_iter,
                "seed": config.trainer.seed,
            }
        ),
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
        "svm_protocol": "goyal19",
        "geometry": "standard",
        "image": f"whole image resized to {image.crop} x {image.crop}",
        "rescaled": False,  # frozen features of the folded network as it is
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
    cache: SVMCache,
) -> list[dict[str, Any]]:
    """Low-shot SVMs (``transfer.voc.low_shot``) for every k of ``svm.low_shot_k``; returns one row's own
    fields per k and writes the mAP-against-k plot to the run folder. The features are cached; the draws'
    SVMs are refitted on a resume."""
    svm = config.svm
    train_features, test_features = svm_feature_sets(config, backbone, pooling, voc, layer, cache)
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
        ap_metric=cls_ap_metric(config),
        seed=config.trainer.seed,
        class_names=voc.classes,
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
                "svm_protocol": "goyal19",
                "geometry": "standard",
                "image": f"whole image resized to {config.image.crop} x {config.image.crop}",
                "rescaled": False,
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
    network, source, voc = load_trunk(config, standard_geometry=config.protocol in ("svm", "kraehenbuehl16"))
    if config.protocol == "svm":
        layer = config.svm.layer or default_svm_layer(source.model_name)
        label = f"svm-low-shot-{layer}" if config.low_shot else f"svm-{layer}"
        backbone, pooling = svm_trunk(config, network, layer)
    else:
        layer = config.head_layer or default_head_layer(network)
        label = f"{config.protocol}-{config.train_from}"
    with started_run(config, TASK, f"{source.pretrain_run}-{label}", source, voc) as run:
        run_dir, logger = run.run_dir, run.logger
        log.info(
            "VOC classification (%s) of %s %s from %s on %s",
            label,
            source.model_name,
            source.pretrain_run,
            source.ckpt,
            voc.label,
        )
        if config.protocol == "svm":
            with StopBetweenUnits() as stop:
                cache = svm_cache(config, run_dir, backbone, pooling, voc, layer, stop)
                if config.low_shot:
                    return classify_low_shot(
                        config, backbone, pooling, voc, layer, logger, run_dir, source, cache
                    )
                fields, mean_ap, per_class = svm_protocol(
                    config, backbone, pooling, voc, layer, logger, cache, run_dir
                )
        elif config.protocol == "kraehenbuehl16":
            fields, mean_ap, per_class = kraehenbuehl16(config, network, voc, layer, run)
        else:
            fields, mean_ap, per_class = finetune(config, network, voc, layer, run)
        ap = per_class_ap(voc.classes, per_class)
        row = {
            **base_row(config, TASK, run_dir, source, voc),
            **fields,
            "ap_metric": cls_ap_metric(config),
            "map": percent(mean_ap),
            "ap": ap,
        }
        log_per_class(logger, voc.classes, per_class, step=int(fields.get("steps", 0)))
        publish_and_print(
            [row],
            run_dir,
            config.results,
            f"VOC07 classification ({label}) of {source.pretrain_run} ({source.model_name}) on {voc.label}:",
            [f"mAP {100 * mean_ap:.2f} ({cls_ap_metric(config)} AP)"],
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
    cache: SVMCache,
) -> list[dict[str, Any]]:
    """The low-shot SVM protocol end to end: its rows (task "voc-svm-low-shot", one per k) published."""
    rows = [
        {
            **base_row(config, LOW_SHOT_TASK, run_dir, source, voc),
            **fields,
            "ap_metric": cls_ap_metric(config),
        }
        for fields in low_shot_protocol(config, backbone, pooling, voc, layer, logger, run_dir, cache)
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
