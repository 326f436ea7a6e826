"""``PLAN=1``: what each stage of ``make reproduce`` would run, on how many images for how many steps, and how long
it would take, before anything starts. Nothing is written.

Rates are images per second per device measured by ``make bench`` on one NVIDIA H200 (docs/benchmarks.md,
"Measured on NVIDIA H200", run 2, 2026-11-27). A stage without a row of its own takes a measured row's achieved
FLOP rate and this stage's network FLOPs per image (counted on the meta device), and says so. Several devices are
assumed to scale linearly (the estimate is a lower bound on the time).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from lit_colorization.data.embedded import load_embedded_photos
from lit_colorization.data.listing import is_image_file
from lit_colorization.models import create_model
from lit_colorization.runtime.scaling import scale_recipe
from transfer.probe.probe_config import probe_schedule
from transfer.reproduce.reproduce_config import ReproduceConfig
from transfer.reproduce.stages import PreparedStage, StageSpec, prepare_stage
from transfer.trunk import in_standard_geometry
from transfer.voc.dataset import VOC_CLASSES, voc_year_dir
from transfer.voc.detection import (
    FAST_RCNN_LAYER,
    FC67_PROTOCOL,
    MLP_PROTOCOL,
    ROIS_PER_IMAGE,
    default_backbone_layer,
)
from transfer.voc.sbd import release_list_sizes
from transfer.voc.synthetic import SBD_FOLDER
from transfer.voc.voc_config import resolve_seg_protocol

RATES_HARDWARE = "NVIDIA H200 (docs/benchmarks.md, make bench run 2, 2026-11-27)"
# docs/benchmarks.md, "Measured on NVIDIA H200", run 2: images/s.
PRETRAIN_END_TO_END = 2_506  # row (c): pretrain(), nvJPEG, eccv16 width 1, 176x176, bf16 + compile
BARE_LOOP = 3_037  # row (c0): the same data path and training step without Lightning
MODEL_STEP = 3_914  # row (a): eccv16 train step on data already on the device
PROBE_TRUNK = 48_823  # row (e): AlexNet probe trunk forward to conv5, 227x227
PROBE_FIVE_HEADS = 28_460  # row (f): the trunk and five zhang16 heads trained in one pass, 227x227
BENCH_FLOPS_PER_IMAGE = 118.4e9  # one eccv16 train step at 176x176 (forward, loss, backward)
TRAIN_STEP_OVER_FORWARD = 3  # a training step's FLOPs: the forward's and twice them for the backward
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class StagePlan:
    """One line of the plan."""

    name: str
    what: str
    images: str
    steps: str
    hours: float
    basis: str
    at_least: bool = (
        True  # the hours are a lower bound (a rate that leaves out part of the work, or FLOP-scaled)
    )


def count_images(folder: Path) -> int:
    """The image files under ``folder`` (any depth; empty files count: a plan needs names, not pixels)."""
    total = 0
    for _, _, files in os.walk(folder):
        total += sum(1 for name in files if is_image_file(name))
    return total


def image_set_size(root: str, year: str, kind: str, image_set: str) -> int:
    """Images listed in ``VOCdevkit/VOC<year>/ImageSets/<kind>/<image_set>.txt``."""
    listing = voc_year_dir(root, year) / "ImageSets" / kind / f"{image_set}.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"{listing}: not found; VOC must hold VOCdevkit/VOC{year} with its ImageSets")
    return sum(1 for line in listing.read_text().splitlines() if line.strip())


def forward_flops(model: str, kwargs: dict[str, Any], height: int, width: int) -> float:
    """FLOPs of one forward pass of ``model`` on one gray image, counted on the meta device (no compute)."""
    with torch.device("meta"):
        network = create_model(model, **kwargs)
        with FlopCounterMode(display=False) as counter:
            network(torch.rand(1, 1, height, width))
    return float(counter.get_total_flops())


# torchvision's RoIHeads default (box_batch_size_per_image): the RoIs faster-rcnn-mlp samples per training image.
MLP_ROIS_PER_IMAGE = 512
VOC_ASPECT = 4 / 3  # VOC photos are mostly 500 x 375


def detection_flops(config: Any, model: str, kwargs: dict[str, Any]) -> tuple[float, str]:
    """FLOPs of one training image of the detector ``config`` describes, and what they count: the trunk up to the
    RoI layer on a 4:3 image at the mean training scale, plus the box head over the RoIs sampled per image. The
    RPN and the losses are left out (small beside the trunk)."""
    detector = config.detector
    protocol = config.protocol or (FC67_PROTOCOL if model == "alexnet" else MLP_PROTOCOL)
    fc67 = protocol == FC67_PROTOCOL
    sizes, longest = (
        (detector.train_sizes, detector.train_max_size) if fc67 else ([detector.min_size], detector.max_size)
    )
    shorter = sum(sizes) / len(sizes)
    longer = min(shorter * VOC_ASPECT, longest)
    height, width = round(longer / VOC_ASPECT), round(longer)
    with torch.device("meta"):
        network = create_model(model, **kwargs)
        if fc67:
            network = in_standard_geometry(network)
        layer = FAST_RCNN_LAYER if fc67 else detector.backbone_layer or default_backbone_layer(network)
        with FlopCounterMode(display=False) as counter:
            channels = network.features(torch.rand(1, 1, height, width), [layer])[layer].shape[1]
    classes = len(config.data.classes or VOC_CLASSES) + 1
    if fc67:  # fc6 on the 6 x 6 pooled conv5, fc7, cls_score and bbox_pred
        widths = [(channels * 36, 4096), (4096, 4096), (4096, 5 * classes)]
        rois = ROIS_PER_IMAGE
    else:
        side, hidden = detector.roi_output_size, detector.representation_size
        widths = [(channels * side * side, hidden), (hidden, hidden), (hidden, 5 * classes)]
        rois = MLP_ROIS_PER_IMAGE
    head = rois * sum(2 * fan_in * fan_out for fan_in, fan_out in widths)
    note = f"{protocol}: the trunk to {layer} at {height} x {width} and the box head on {rois} RoIs (RPN not counted)"
    return float(counter.get_total_flops()) + head, note


def flop_scaled(rate: float, flops_per_image: float) -> float:
    """A rate at ``flops_per_image`` that keeps row (a)/(c)'s achieved FLOP rate."""
    return rate * BENCH_FLOPS_PER_IMAGE / flops_per_image


def devices_seen() -> str:
    if torch.cuda.is_available():
        names = {torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())}
        return f"{torch.cuda.device_count()} x {', '.join(sorted(names))}"
    return "no GPU"


def world_size(config: ReproduceConfig) -> int:
    per_node = config.gpus or (torch.cuda.device_count() if torch.cuda.is_available() else 1)
    return per_node * config.nodes


def _hours(images: float, rate: float, devices: int) -> float:
    return images / (rate * devices) / SECONDS_PER_HOUR


def _training_images(stage: PreparedStage) -> int:
    data = stage.config.data
    if data.source == "folder":
        return count_images(Path(data.root) / data.train_split)
    if data.source == "embedded":  # an epoch of the few embedded photos: crops_per_epoch random crops of each
        return data.crops_per_epoch * len(load_embedded_photos())
    return int(data.synthetic_train_images)


def plan_pretraining(stage: PreparedStage, devices: int) -> StagePlan:
    config = stage.config
    images = _training_images(stage)
    flops = TRAIN_STEP_OVER_FORWARD * forward_flops(
        config.model.name, dict(config.model.kwargs), config.data.crop_size, config.data.crop_size
    )
    if stage.spec.name == "prior":
        # One pass over the training set: decoding and soft-encoding, no network; row (c0) includes a training
        # step as well, so this over-estimates.
        return StagePlan(
            "prior",
            stage.spec.summary,
            f"{images:,}",
            "1 pass",
            _hours(images, BARE_LOOP, 1),
            "row (c0), 1 device: it includes a training step, so this over-estimates",
            at_least=False,
        )
    scale = scale_recipe(config, devices // config.trainer.num_nodes or 1)
    rate = flop_scaled(PRETRAIN_END_TO_END, flops)
    seen = scale.max_steps * scale.global_batch
    return StagePlan(
        "pretrain",
        f"{stage.spec.summary} ({config.model.name}, global batch {scale.global_batch}, {config.data.crop_size}px)",
        f"{images:,} ({seen / max(images, 1):.3g} epochs)",
        f"{scale.max_steps:,}",
        _hours(seen, rate, devices),
        f"row (c) FLOP-scaled to {flops / 1e9:.1f} GFLOP/image: {rate:,.0f} img/s/device (the JPEG path may bind "
        "first)",
    )


def plan_probe(stage: PreparedStage, devices: int) -> StagePlan:
    config = stage.config
    images = _training_images(stage)
    schedule = probe_schedule(config)
    per_step = config.data.batch_size * devices
    steps = schedule.length if schedule.unit == "step" else schedule.length * math.ceil(images / per_step)
    return StagePlan(
        stage.spec.name,
        stage.spec.summary,
        f"{images:,}",
        f"{steps:,}",
        _hours(steps * per_step, PROBE_FIVE_HEADS, devices),
        f"row (f) {PROBE_FIVE_HEADS:,} img/s/device (data on the device; the JPEG path, row (h), not included); "
        f"batch {config.data.batch_size} per device, {per_step} global",
    )


def _voc_root(stage: PreparedStage) -> str | None:
    return stage.config.data.root


def plan_voc(stage: PreparedStage, devices: int) -> StagePlan:
    config, name = stage.config, stage.spec.name
    root = _voc_root(stage)
    if (
        name == "voc-seg"
    ):  # the keys its protocol fills in (the stages name the protocol; null would be alexnet's)
        config = resolve_seg_protocol(config, "alexnet" if config.protocol != "project-fcn" else "any")
    release = name == "voc-seg" and config.protocol == "release"
    if release:
        sbd = config.data.sbd_root or (str(Path(root) / SBD_FOLDER) if root else None)
        train, test = release_list_sizes(root, sbd) if root else (None, None)
    elif name == "voc-seg":
        train = (
            image_set_size(root, config.data.year, "Segmentation", config.data.train_set) if root else None
        )
        test = image_set_size(root, config.data.year, "Segmentation", config.data.test_set) if root else None
    else:
        years = list(config.data.train_years)
        train = (
            sum(image_set_size(root, year, "Main", config.data.train_set) for year in years) if root else None
        )
        test = image_set_size(root, "2007", "Main", config.data.test_set) if root else None
    if train is None:  # the generated VOC: VOC2007 trains on trainval, VOC2012 (no test split) scores val
        tiny = config.data.tiny
        seg = name == "voc-seg"
        train, test = (
            (tiny.num_train, tiny.num_val) if seg else (tiny.num_train + tiny.num_val, tiny.num_test)
        )
    images = f"{train:,} train, {test:,} test"
    model, kwargs = config.model or "alexnet", dict(config.model_kwargs)
    if name in ("voc-svm", "voc-svm-low-shot"):
        crop = config.image.crop
        extraction = _hours(train + test, PROBE_TRUNK, 1)
        return StagePlan(
            name,
            stage.spec.summary,
            images,
            "1 forward pass",
            extraction,
            f"row (e) {PROBE_TRUNK:,} img/s for the features at {crop}px; the per-class SVM fits (CPU) not measured",
        )
    if name == "voc-det":
        forward, note = detection_flops(config, model, kwargs)
    elif release:
        # Whole VOC images (about 500 x 375) padded by 100 on each side, one per forward.
        forward = forward_flops(model, kwargs, 375 + 200, 500 + 200)
        note = "the trunk on a whole 500 x 375 image padded by 100"
    else:
        forward = forward_flops(model, kwargs, config.image.crop, config.image.crop)
        note = "the whole network"
    flops = TRAIN_STEP_OVER_FORWARD * forward
    rate = flop_scaled(MODEL_STEP, flops)
    steps = config.trainer.max_steps
    per_process = config.optim.iter_size if release else config.data.batch_size
    per_step = per_process * devices  # a VOC task's batch is per process
    batch_note = f"; batch {per_process} per process, {per_step} global" if devices > 1 else ""
    return StagePlan(
        name,
        stage.spec.summary,
        images,
        f"{steps:,}",
        _hours(steps * per_step, rate, devices),
        f"row (a) FLOP-scaled to {flops / 1e9:.1f} GFLOP/image, {note}: {rate:,.0f} img/s/device{batch_note}",
    )


def plan_stage(stage: PreparedStage, devices: int) -> StagePlan:
    name = stage.spec.name
    if name in ("prior", "pretrain"):
        return plan_pretraining(stage, devices)
    if name in ("probe", "places-probe"):
        return plan_probe(stage, devices)
    if stage.spec.command is None:
        return StagePlan(name, stage.spec.summary, "-", "-", 0.0, "seconds", at_least=False)
    return plan_voc(stage, devices)


def print_plan(config: ReproduceConfig, specs: list[StageSpec]) -> list[StagePlan]:
    """Print one line per stage and the total; returns the lines' contents. Writes nothing."""
    devices = world_size(config)
    print(
        f"make reproduce RUN={config.run} PLAN=1: {config.scale} scale, {config.model}, {devices} device(s) "
        f"({config.gpus or 'auto'} per node x {config.nodes} node(s)); this machine sees {devices_seen()}"
    )
    print(f"rates: {RATES_HARDWARE}, per device, assumed to scale linearly over {devices} device(s)")
    plans = [plan_stage(prepare_stage(spec, config, inputs_written=False), devices) for spec in specs]
    width = max(len(plan.name) for plan in plans)
    for plan in plans:
        hours = f"{'>=' if plan.at_least else '  '}{plan.hours:8.2f} h"
        print(
            f"  {plan.name:<{width}}  {hours}  steps {plan.steps:>14}  images {plan.images:<28}  {plan.what}  "
            f"[{plan.basis}]"
        )
    total = sum(plan.hours for plan in plans)
    print(
        f"  {'total':<{width}}  >={total:8.2f} h  ({total / 24:.2f} days) on {devices} x H200 at the rates above; "
        ">= marks a lower bound: a FLOP-scaled rate, or work the measured row leaves out"
    )
    return plans
