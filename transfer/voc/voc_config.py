"""Config schemas of the Pascal VOC benchmarks: ``configs/voc_cls.yaml``, ``configs/voc_det.yaml`` and
``configs/voc_seg.yaml``.

Merging order: the YAML file (sized for a CPU run on the tiny generated VOC), then
``configs/presets/voc_cls|voc_det|voc_seg/<preset>.yaml`` (``voc07``, ``voc12``: the paper's protocol on a real
VOCdevkit), then ``key=value`` overrides. The dataclass defaults are the paper-scale protocol; every value can be
overridden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lit_colorization.config.commands import CommandConfig, register_command
from lit_colorization.config.loading import (
    ConfigError,
    require,
    require_folder_name,
    require_results_path,
    validate_trainer_config,
)
from lit_colorization.config.schema import BaseTrainerConfig, LoggerConfig
from transfer.transfer_config import TransferRunConfig, validate_resume, validate_sgd

# kraehenbuehl16: the paper's fine-tuning, philkr/voc-classification as the release ran it (docs/reference.md 11.4);
# finetune: this project's earlier recipe (training geometry, global average pool, no dropout); svm: goyal19's
# per-class SVMs on frozen features of the whole image at image.crop (section 11.5).
# The protocols that rescale the folded standard network as the release did (rescale_images); null: by network.
RELEASE_RESCALE_PROTOCOLS = ("kraehenbuehl16", "faster-rcnn-fc67", "release", None)
CLS_PROTOCOLS = ("kraehenbuehl16", "finetune", "svm")
# How a classification row's AP is computed (docs/reference.md sections 11.4, 11.5; transfer/voc/evaluation.py):
# "area" scikit-learn's average_precision_score (philkr/voc-classification), "area-envelope" the area under the
# precision envelope (fair_self_supervision_benchmark's and VISSL's SVM test), "11pt" the VOC2007 devkit's 11-point AP.
AP_METRICS = ("area", "area-envelope", "11pt")
# Each protocol's own AP, unless ap_metric says otherwise.
PROTOCOL_AP_METRICS = {"kraehenbuehl16": "area", "finetune": "11pt", "svm": "area-envelope"}
# Goyal et al. 2019's cost grid for the per-class SVMs (docs/reference.md section 6).
SVM_COSTS = [0.01, 0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0]
# Goyal et al. 2019's low-shot protocol: positives per class, and independent draws of each (docs/reference.md 6.2).
LOW_SHOT_K = [1, 2, 4, 8, 16, 32, 64, 96]
LOW_SHOT_SAMPLES = 5


def default_classes() -> list[str]:
    """The tiny VOC's classes (imported when a config is built: the dataset modules import torch, --help must not)."""
    from transfer.voc.synthetic import DEFAULT_CLASSES

    return list(DEFAULT_CLASSES)


@dataclass
class TinyVOCConfig:
    """The generated stand-in for VOC2007 used when ``data.root`` is unset (see ``transfer.voc.synthetic``)."""

    cache_dir: str = "runs/_data/tiny_voc"  # generated once per setting into a sub-folder, then reused
    num_train: int = 20
    num_val: int = 20
    num_test: int = 30
    image_size: int = 128  # longer side in pixels
    classes: list[str] = field(default_factory=lambda: default_classes())
    seed: int = 0


@dataclass
class VOCDataConfig:
    """Where VOC lives (data.root holds VOCdevkit/; unset: the generated tiny VOC), its years, sets and loader."""

    root: str | None = None  # the folder holding VOCdevkit/ (Makefile: DATA); None: the tiny generated VOC
    train_years: list[str] = field(default_factory=lambda: ["2007"])  # ["2007", "2012"]: VOC07+12 training
    train_set: str = "trainval"
    test_set: str = "test"  # of VOC2007
    classes: list[str] | None = (
        None  # None: the 20 VOC classes (the tiny VOC's own classes when root is unset)
    )
    batch_size: int = 10
    num_workers: int = 4
    tiny: TinyVOCConfig = field(default_factory=TinyVOCConfig)


@dataclass
class VOCTrainerConfig(BaseTrainerConfig):
    """The VOC runs' trainer: the Lightning settings, steps or epochs."""

    max_steps: int = 80_000  # -1: limited by max_epochs only
    max_epochs: int | None = None
    val_check_interval: int | None = None  # steps between evaluations on the test set; None: only at the end
    checkpoint_every_n_steps: int = (
        1000  # steps between writes of last.ckpt (0: only at the end and on a stop)
    )


@dataclass
class SGDConfig:
    """SGD of the fine-tuned layers and the head: lr, momentum, weight decay, milestones."""

    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: list[int] = field(default_factory=lambda: [40_000, 60_000])  # optimizer steps
    gamma: float = 0.1


@dataclass
class ClsImageConfig:
    # finetune: shorter side before cropping; svm: shorter side before the whole image is squashed to crop x crop
    resize: int = 256
    # kraehenbuehl16 and finetune: the network's input side; svm: the side the whole image is resized to
    crop: int = 227
    # kraehenbuehl16: each view samples a crop * s square, s uniform in [min_scale, max_scale] (clipped to the
    # image), mirrored at random; the test sums test_views such draws (philkr/voc-classification's "10 crops").
    min_scale: float = 0.5
    max_scale: float = 2.0
    test_views: int = 10


@dataclass
class ClsOptimConfig(SGDConfig):
    """Defaults: philkr/voc-classification's solver (docs/reference.md section 11.4): SGD momentum 0.9, lr 1e-3
    x0.5 every 10k of 80k steps, weight decay 1e-6, gradients clipped to L2 norm 10, biases at lr x2."""

    weight_decay: float = 1e-6
    milestones: list[int] = field(default_factory=lambda: list(range(10_000, 80_000, 10_000)))
    gamma: float = 0.5
    clip_gradients: float | None = 10.0  # the global L2 norm of the gradients at most this; null: no clipping
    bias_lr_mult: float = 2.0
    bias_weight_decay: float | None = None  # null: weight_decay (the release decays biases while fine-tuning)


@dataclass
class SVMConfig:
    """The linear SVMs on frozen features (protocol=svm): layer, costs, folds and low-shot draws."""

    layer: str | None = None  # None: the last conv layer (alexnet conv5, resnet50 res5, eccv16 conv7)
    costs: list[float] = field(default_factory=lambda: list(SVM_COSTS))
    folds: int = (
        3  # cross-validation folds for choosing each class's cost (fewer if a class has fewer positives)
    )
    positive_weight: float = 2.0  # class weight of the positives, as in Goyal et al.'s benchmark (recalled)
    max_iter: int = 2000
    # Images per cached chunk of extracted features (runs/voc-cls-<run>/features/): a killed job re-extracts at
    # most one chunk per split.
    chunk_images: int = 1000
    # low_shot=true: positives per class (each class also gets (classes - 1) x k negatives) and draws per k.
    low_shot_k: list[int] = field(default_factory=lambda: list(LOW_SHOT_K))
    low_shot_samples: int = LOW_SHOT_SAMPLES
    # low_shot: also save the frozen features (train and test, N x D float32) in the run folder's
    # low_shot_features.npz, to refit the draws elsewhere (VOC07 conv5: about 370 MB); the draws are always saved.
    save_features: bool = False


@dataclass
class VOCClsConfig(TransferRunConfig):
    # Kraehenbuehl's between-layer rescaling of the pretrained trunk on training images before fine-tuning: the
    # paper's VOC rows (docs/reference.md section 7, "rescaled before fine-tuning") were measured so.
    rescale: bool = True
    # The release's rescaling crops (transfer/voc/rescale.py): a folder of ImageNet training images (e.g.
    # /data/imagenet/train) for the standard-geometry protocols (kraehenbuehl16, faster-rcnn-fc67, release);
    # null: 227 crops of the VOC training images.
    rescale_images: str | None = None
    # run=None names the run folder <pretrain run>-<protocol>-<layer>
    protocol: str = "kraehenbuehl16"  # kraehenbuehl16 | finetune | svm (CLS_PROTOCOLS)
    # protocol=svm: Goyal et al. 2019's low-shot SVMs (svm.low_shot_k positives per class, svm.low_shot_samples
    # draws each) instead of SVMs on the whole training set; one result row per k.
    low_shot: bool = False
    train_from: str = (
        "conv1"  # finetune: first trainable layer; the layers before it stay frozen (fc6: fc6-8)
    )
    head_layer: str | None = (
        None  # finetune: the layer under the new head (None: alexnet fc7, resnet50 res5, ...)
    )
    ap_metric: str | None = None  # null: the protocol's (PROTOCOL_AP_METRICS); area | area-envelope | 11pt
    data: VOCDataConfig = field(default_factory=lambda: VOCDataConfig(batch_size=16))
    image: ClsImageConfig = field(default_factory=ClsImageConfig)
    optim: ClsOptimConfig = field(default_factory=ClsOptimConfig)
    svm: SVMConfig = field(default_factory=SVMConfig)
    trainer: VOCTrainerConfig = field(default_factory=VOCTrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


# faster-rcnn-fc67: Fast R-CNN's CaffeNet head on an RPN, the pretrained fc6/fc7 on 6 x 6 RoI max pooling of conv5
# of the folded standard AlexNet (docs/reference.md section 11.7); faster-rcnn-mlp: a new 2-layer MLP on RoIAlign
# features of the training-geometry trunk, fc6/fc7 unused. null: fc67 for an AlexNet, mlp for the other networks.
DET_PROTOCOLS = ("faster-rcnn-fc67", "faster-rcnn-mlp")
# Fast R-CNN's multi-scale training: each image's shorter side drawn from these, the longer at most 2000
# (experiments/cfgs/multiscale.yml lines 3-4).
FAST_RCNN_TRAIN_SIZES = [480, 576, 688, 864, 1200]
FAST_RCNN_TRAIN_MAX_SIZE = 2000


@dataclass
class DetectorConfig:
    """The Faster R-CNN on the trunk: backbone layer, anchors, image sizes and box head."""

    backbone_layer: str | None = (
        None  # None: alexnet conv5, resnet50 res4, eccv16 conv5 (faster-rcnn-fc67: conv5)
    )
    freeze_backbone: bool = False  # BatchNorm statistics and affine parameters stay frozen either way
    min_size: int = 600  # shorter image side at test (Fast R-CNN's single test scale)
    max_size: int = 1000  # longer side at most, at test
    # Training: each image's shorter side drawn from train_sizes, the longer at most train_max_size.
    train_sizes: list[int] = field(default_factory=lambda: list(FAST_RCNN_TRAIN_SIZES))
    train_max_size: int = FAST_RCNN_TRAIN_MAX_SIZE
    anchor_sizes: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    roi_output_size: int = 7  # faster-rcnn-mlp (faster-rcnn-fc67 pools 6 x 6, fc6's kernel)
    representation_size: int = (
        1024  # faster-rcnn-mlp: width of the two fully connected layers of the box head
    )
    score_threshold: float = (
        0.0  # keep every scored detection up to detections_per_image, as VOC evaluation wants
    )
    detections_per_image: int = 100


@dataclass
class DetOptimConfig(SGDConfig):
    """SGD of the detector; null bias keys take the protocol's: faster-rcnn-fc67 biases at lr x2 without weight
    decay (Fast R-CNN's CaffeNet train.prototxt, every layer's lr_mult 2 / decay_mult 0 on the bias),
    faster-rcnn-mlp biases as the weights."""

    bias_lr_mult: float | None = None
    bias_weight_decay: float | None = None


@dataclass
class VOCDetConfig(TransferRunConfig):
    # Kraehenbuehl's between-layer rescaling of the pretrained trunk on training images before fine-tuning: the
    # paper's VOC rows (docs/reference.md section 7, "rescaled before fine-tuning") were measured so.
    # faster-rcnn-fc67 rescales the folded standard network as voc-cls kraehenbuehl16 does.
    rescale: bool = False
    # The release's rescaling crops (transfer/voc/rescale.py): a folder of ImageNet training images (e.g.
    # /data/imagenet/train) for the standard-geometry protocols (kraehenbuehl16, faster-rcnn-fc67, release);
    # null: 227 crops of the VOC training images.
    rescale_images: str | None = None
    protocol: str | None = None  # faster-rcnn-fc67 | faster-rcnn-mlp (DET_PROTOCOLS); null: by network
    # run=None names the run folder <pretrain run>[-fc67]-<layer>[-frozen]
    data: VOCDataConfig = field(default_factory=lambda: VOCDataConfig(batch_size=2))
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    # Fast R-CNN's schedule (docs/reference.md section 11.7): 150k iterations, lr x0.1 every 50k.
    optim: DetOptimConfig = field(
        default_factory=lambda: DetOptimConfig(lr=1e-3, weight_decay=5e-4, milestones=[50_000, 100_000])
    )
    trainer: VOCTrainerConfig = field(default_factory=lambda: VOCTrainerConfig(max_steps=150_000))
    logger: LoggerConfig = field(default_factory=LoggerConfig)


# voc-seg protocols (docs/voc_protocols.md, docs/reference.md section 11.6): release, the release's FCN-AlexNet on
# VOC2011 train + SBD scored on seg11valid (the default for alexnet, which alone has the standard geometry it needs);
# project-fcn, this project's FCN-32s-style head on VOC2012 train -> val (the default for every other network).
SEG_PROTOCOLS = ("release", "project-fcn")
RELEASE_SEG_MODELS = ("alexnet",)
# What each protocol reads where the config leaves a key null (resolve_seg_protocol_).
SEG_PROTOCOL_DEFAULTS: dict[str, dict[str, object]] = {
    # The release: VOC2011 (+ SBD), its own lists, whole images one at a time with iter_size 20, biases lr x2 and
    # no weight decay (train_val.prototxt, solver0.prototxt).
    "release": {
        "data.year": "2011",
        "data.batch_size": 1,
        "optim.iter_size": 20,
        "optim.bias_lr_mult": 2.0,
        "optim.bias_weight_decay": 0.0,
    },
    "project-fcn": {
        "data.year": "2012",
        "data.train_set": "train",
        "data.test_set": "val",
        "data.batch_size": 20,
        "optim.iter_size": 1,
        "optim.bias_lr_mult": 1.0,
        "optim.bias_weight_decay": None,  # as the weights
    },
}
# Keys the release protocol fixes: set to anything but null (or the release's own value) they are refused.
RELEASE_FIXED_KEYS = ("data.year", "data.train_set", "data.test_set", "data.batch_size")


@dataclass
class VOCSegDataConfig:
    """Where VOC lives (data.root holds VOCdevkit/; unset: the tiny VOC), SBD, the splits and the loader."""

    root: str | None = None  # the folder holding VOCdevkit/ (Makefile: DATA); None: the tiny generated VOC
    # protocol=release: the SBD folder holding dataset/{img,cls,train.txt,val.txt} (benchmark_RELEASE as it
    # unpacks; Makefile: SBD); null: <root>/benchmark_RELEASE
    sbd_root: str | None = None
    year: str | None = None  # null: the protocol's (release: 2011; project-fcn: 2012)
    train_set: str | None = (
        None  # project-fcn (null: train); release: its own list (VOC2011 train + SBD train)
    )
    test_set: str | None = None  # project-fcn (null: val of VOC2012); release: seg11valid
    classes: list[str] | None = (
        None  # None: the 20 VOC classes (the tiny VOC's own classes when root is unset); background is added
    )
    batch_size: int | None = None  # null: the protocol's (release: 1 whole image; project-fcn: 20 crops)
    num_workers: int = 4
    # VOC2011 and VOC2012 have no test split, so their tiny stand-in has no test images.
    tiny: TinyVOCConfig = field(default_factory=lambda: TinyVOCConfig(num_test=0))


@dataclass
class SegImageConfig:
    """The segmentation crops (project-fcn; the release trains on whole images): the training crop size."""

    crop: int = 320  # random training crops (padded with void where an image is smaller), with flips


@dataclass
class SegOptimConfig(SGDConfig):
    """Defaults: the release's solvers (docs/reference.md section 11.6): SGD momentum 0.9, weight decay 5e-4, lr
    1e-4, 1e-5, 1e-6 for 50k iterations each (150k), each iteration accumulating ``iter_size`` images."""

    lr: float = 1e-4
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=lambda: [50_000, 100_000])
    gamma: float = 0.1
    # null: the protocol's (SEG_PROTOCOL_DEFAULTS): release 20 images per step (Caffe's iter_size), project-fcn 1
    iter_size: int | None = None
    bias_lr_mult: float | None = None  # null: the protocol's (release 2, as lr_mult: 2; project-fcn 1)
    bias_weight_decay: float | None = (
        None  # null: the protocol's (release 0, decay_mult: 0; project-fcn as weights)
    )


@dataclass
class VOCSegConfig(TransferRunConfig):
    # null: release for alexnet, project-fcn for the other networks (SEG_PROTOCOLS); release needs an alexnet
    protocol: str | None = None
    # Kraehenbuehl's between-layer rescaling of the pretrained trunk on training images before fine-tuning: the
    # release fine-tuned the rescaled network (solve.py: alexnet_release_450000_nobn_rs.caffemodel).
    rescale: bool = True
    # The release's rescaling crops (transfer/voc/rescale.py): a folder of ImageNet training images (e.g.
    # /data/imagenet/train) for the standard-geometry protocols (kraehenbuehl16, faster-rcnn-fc67, release);
    # null: 227 crops of the VOC training images.
    rescale_images: str | None = None
    # protocol=release: the learned ab branch (conv1_ab on 0.69308239 (a + b), summed into conv1) as the
    # release's prototxt has it; false: the segmenter sees L only
    colour_branch: bool = True
    # protocol=release: where the x32 upsampled scores are cropped to the input: 0 as the release's Caffe crops
    # (its prototxt gives the Crop no offset), 18 aligns them with the input (Caffe's coord_map; FCN's own net)
    crop_offset: int = 0
    # run=None names the run folder <pretrain run>-fcn-<layer>-<train_from> (release: <pretrain run>-release)
    train_from: str = "conv1"  # first trainable layer; the layers before it stay frozen (release: conv1 only)
    head_layer: str | None = (
        None  # the layer under the FCN head (None: alexnet fc7, resnet50 res5, eccv16 conv7; release: fc7)
    )
    data: VOCSegDataConfig = field(default_factory=VOCSegDataConfig)
    image: SegImageConfig = field(default_factory=SegImageConfig)
    optim: SegOptimConfig = field(default_factory=SegOptimConfig)
    trainer: VOCTrainerConfig = field(default_factory=lambda: VOCTrainerConfig(max_steps=150_000))
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def _validate_run(config: VOCClsConfig | VOCDetConfig | VOCSegConfig) -> None:
    """What every VOC command checks: its run name, results path, trainer, SGD, schedule length and the
    rescaling's images."""
    trainer = config.trainer
    require(
        config.rescale_images is None or Path(config.rescale_images).is_dir(),
        "rescale_images",
        "null or a folder of ImageNet training images",
        config.rescale_images,
    )
    require(
        config.rescale_images is None or config.protocol in RELEASE_RESCALE_PROTOCOLS,
        "rescale_images",
        f"null unless protocol is one of {list(RELEASE_RESCALE_PROTOCOLS)} (the release's rescaling)",
        config.rescale_images,
    )
    require(
        config.rescale_images is None or config.rescale,
        "rescale_images",
        "null when rescale=false",
        config.rescale_images,
    )
    require_folder_name("run", config.run)
    require_results_path(config.results)
    validate_trainer_config(trainer)
    validate_sgd(config.optim, milestone_unit="step")
    validate_resume(config)
    require(
        trainer.max_steps > 0 or (trainer.max_steps == -1 and (trainer.max_epochs or 0) > 0),
        "trainer.max_steps",
        "a positive integer, or -1 with a positive trainer.max_epochs",
        trainer.max_steps,
    )
    require(
        trainer.max_epochs is None or trainer.max_epochs > 0,
        "trainer.max_epochs",
        "a positive integer or null",
        trainer.max_epochs,
    )
    require(
        trainer.val_check_interval is None or trainer.val_check_interval > 0,
        "trainer.val_check_interval",
        "a positive number of steps or null",
        trainer.val_check_interval,
    )


def _validate_bias_keys(optim: ClsOptimConfig | DetOptimConfig | SegOptimConfig) -> None:
    """The biases' lr multiplier (positive) and weight decay (>= 0); null, where a schema allows it, is the
    protocol's."""
    mult, decay = optim.bias_lr_mult, optim.bias_weight_decay
    require(mult is None or mult > 0, "optim.bias_lr_mult", "a positive number or null", mult)
    require(decay is None or decay >= 0, "optim.bias_weight_decay", "null or >= 0", decay)


def _validate_data_basics(data: VOCDataConfig) -> None:
    """Classes, batch size and workers, and the tiny VOC's sizes: what every VOC data section checks."""
    _validate_classes_and_tiny(data)
    require(data.batch_size > 0, "data.batch_size", "a positive integer", data.batch_size)
    require(data.num_workers >= 0, "data.num_workers", "an integer >= 0", data.num_workers)


def _validate_classes_and_tiny(data: VOCDataConfig | VOCSegDataConfig) -> None:
    """The class list and the tiny VOC's sizes."""
    from transfer.voc.dataset import VOC_CLASSES

    if data.classes is not None:
        classes = list(data.classes)
        require(
            bool(classes) and set(classes) <= set(VOC_CLASSES) and len(set(classes)) == len(classes),
            "data.classes",
            "distinct Pascal VOC class names, or null for all 20",
            classes,
        )
    for key in ("num_train", "num_val", "image_size"):
        value = getattr(data.tiny, key)
        require(value > 0, f"data.tiny.{key}", "a positive integer", value)


def _validate_common(config: VOCClsConfig | VOCDetConfig) -> None:
    from transfer.voc.dataset import IMAGE_SETS, VOC_YEARS

    data, tiny = config.data, config.data.tiny
    _validate_run(config)
    _validate_data_basics(data)
    years = list(data.train_years)
    require(
        bool(years) and all(year in VOC_YEARS for year in years) and len(set(years)) == len(years),
        "data.train_years",
        f"distinct years from {list(VOC_YEARS)}",
        years,
    )
    require(
        data.train_set in IMAGE_SETS and data.train_set != "test",
        "data.train_set",
        "train, val or trainval",
        data.train_set,
    )
    require(
        data.test_set in IMAGE_SETS, "data.test_set", f"one of {list(IMAGE_SETS)} (of VOC2007)", data.test_set
    )
    require(
        data.root is not None or years == ["2007"],
        "data.train_years",
        "['2007'] for the tiny generated VOC",
        years,
    )
    require(tiny.num_test > 0, "data.tiny.num_test", "a positive integer", tiny.num_test)


def validate_voc_cls_config(config: VOCClsConfig) -> None:
    _validate_common(config)
    require(config.protocol in CLS_PROTOCOLS, "protocol", f"one of {list(CLS_PROTOCOLS)}", config.protocol)
    require(
        config.ap_metric is None or config.ap_metric in AP_METRICS,
        "ap_metric",
        f"null or one of {list(AP_METRICS)}",
        config.ap_metric,
    )
    image, svm, optim = config.image, config.svm, config.optim
    require(
        0 < image.min_scale <= image.max_scale,
        "image.min_scale",
        f"a number in (0, image.max_scale = {image.max_scale}]",
        image.min_scale,
    )
    require(image.test_views >= 1, "image.test_views", "an integer >= 1", image.test_views)
    clip = optim.clip_gradients
    require(clip is None or clip > 0, "optim.clip_gradients", "null or a positive number", clip)
    _validate_bias_keys(optim)
    require(image.crop > 0, "image.crop", "a positive integer", image.crop)
    require(
        image.resize >= image.crop, "image.resize", f"an integer >= image.crop ({image.crop})", image.resize
    )
    costs = list(svm.costs)
    require(bool(costs) and all(cost > 0 for cost in costs), "svm.costs", "positive numbers", costs)
    require(svm.folds >= 2, "svm.folds", "an integer >= 2", svm.folds)
    require(svm.positive_weight > 0, "svm.positive_weight", "a positive number", svm.positive_weight)
    require(svm.max_iter > 0, "svm.max_iter", "a positive integer", svm.max_iter)
    require(svm.chunk_images > 0, "svm.chunk_images", "a positive integer", svm.chunk_images)
    require(
        not config.low_shot or config.protocol == "svm",
        "low_shot",
        "false unless protocol=svm (low-shot is a protocol of the frozen-feature SVMs)",
        config.low_shot,
    )
    shots = list(svm.low_shot_k)
    require(
        bool(shots) and all(k > 0 for k in shots) and shots == sorted(set(shots)),
        "svm.low_shot_k",
        "increasing positive numbers of positives per class",
        shots,
    )
    require(svm.low_shot_samples > 0, "svm.low_shot_samples", "a positive integer", svm.low_shot_samples)


def validate_voc_det_config(config: VOCDetConfig) -> None:
    _validate_common(config)
    detector = config.detector
    require(detector.min_size > 0, "detector.min_size", "a positive integer", detector.min_size)
    require(
        detector.max_size >= detector.min_size,
        "detector.max_size",
        f"an integer >= detector.min_size ({detector.min_size})",
        detector.max_size,
    )
    sizes, ratios = list(detector.anchor_sizes), list(detector.aspect_ratios)
    require(
        bool(sizes) and all(size > 0 for size in sizes), "detector.anchor_sizes", "positive integers", sizes
    )
    require(
        bool(ratios) and all(ratio > 0 for ratio in ratios),
        "detector.aspect_ratios",
        "positive numbers",
        ratios,
    )
    require(
        config.protocol is None or config.protocol in DET_PROTOCOLS,
        "protocol",
        f"null or one of {list(DET_PROTOCOLS)}",
        config.protocol,
    )
    train_sizes = list(detector.train_sizes)
    require(
        bool(train_sizes) and all(size > 0 for size in train_sizes),
        "detector.train_sizes",
        "positive integers (shorter sides drawn per training image)",
        train_sizes,
    )
    require(
        detector.train_max_size >= max(train_sizes),
        "detector.train_max_size",
        f"an integer >= the largest of detector.train_sizes ({max(train_sizes)})",
        detector.train_max_size,
    )
    _validate_bias_keys(config.optim)
    for key in ("roi_output_size", "representation_size", "detections_per_image"):
        require(getattr(detector, key) > 0, f"detector.{key}", "a positive integer", getattr(detector, key))
    require(
        0 <= detector.score_threshold < 1,
        "detector.score_threshold",
        "a number in [0, 1)",
        detector.score_threshold,
    )


def validate_voc_seg_config(config: VOCSegConfig) -> None:
    from transfer.voc.dataset import IMAGE_SETS, VOC_YEARS

    data, optim = config.data, config.optim
    _validate_run(config)
    require(
        config.protocol is None or config.protocol in SEG_PROTOCOLS,
        "protocol",
        f"null or one of {list(SEG_PROTOCOLS)}",
        config.protocol,
    )
    require(
        data.batch_size is None or data.batch_size > 0,
        "data.batch_size",
        "a positive integer or null",
        data.batch_size,
    )
    require(data.num_workers >= 0, "data.num_workers", "an integer >= 0", data.num_workers)
    _validate_classes_and_tiny(data)
    require(
        data.year is None or data.year in VOC_YEARS,
        "data.year",
        f"null or one of {list(VOC_YEARS)}",
        data.year,
    )
    year = data.year or "2012"
    splits = [name for name in IMAGE_SETS if name != "test" or year == "2007"]
    train_set, test_set = data.train_set or "train", data.test_set or "val"
    require(
        train_set in splits and train_set != "test",
        "data.train_set",
        "null, train, val or trainval",
        data.train_set,
    )
    require(test_set in splits, "data.test_set", f"null or one of {splits} (of VOC{year})", data.test_set)
    pair = {train_set, test_set}
    overlapping = len(pair) == 1 or pair in ({"trainval", "train"}, {"trainval", "val"})
    require(
        not overlapping,
        "data.test_set",
        f"a split sharing no image with data.train_set ({train_set!r}), e.g. val for train",
        data.test_set,
    )
    if year == "2007":
        require(
            data.tiny.num_test > 0, "data.tiny.num_test", "a positive integer for VOC2007", data.tiny.num_test
        )
    else:
        require(
            data.tiny.num_test == 0,
            "data.tiny.num_test",
            f"0 for VOC{year}, which has no test split",
            data.tiny.num_test,
        )
    require(config.image.crop > 0, "image.crop", "a positive integer", config.image.crop)
    require(
        0 <= config.crop_offset <= 31,
        "crop_offset",
        "an integer in [0, 31] (0: the release's Caffe, 18: aligned with the input)",
        config.crop_offset,
    )
    require(
        optim.iter_size is None or optim.iter_size > 0,
        "optim.iter_size",
        "a positive integer or null",
        optim.iter_size,
    )
    _validate_bias_keys(optim)
    if config.protocol == "release":
        validate_release_seg_keys(config)


def validate_release_seg_keys(config: VOCSegConfig) -> None:
    """What protocol=release refuses: keys it fixes set to other values, a partial fine-tuning, another head."""
    own = SEG_PROTOCOL_DEFAULTS["release"]
    for key in RELEASE_FIXED_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        require(
            value is None or value == own.get(key),
            key,
            f"null under protocol=release (it reads VOC2011 train + SBD train and scores seg11valid, one whole image "
            f"at a time; {own.get(key, 'its own list')!s}), or protocol=project-fcn",
            value,
        )
    require(
        config.train_from == "conv1",
        "train_from",
        "conv1 under protocol=release (the release fine-tunes every layer)",
        config.train_from,
    )
    require(
        config.head_layer in (None, "fc7"),
        "head_layer",
        "null or fc7 under protocol=release (score-fr sits on fc7)",
        config.head_layer,
    )


def resolve_seg_protocol(config: VOCSegConfig, model_name: str) -> VOCSegConfig:
    """``config`` for a ``model_name`` network: ``protocol`` set (null: release for alexnet, project-fcn for the
    others) and every key it left null set to that protocol's value (SEG_PROTOCOL_DEFAULTS); a new, read-only
    config."""
    from omegaconf import OmegaConf

    protocol = config.protocol or ("release" if model_name in RELEASE_SEG_MODELS else "project-fcn")
    if protocol == "release" and model_name not in RELEASE_SEG_MODELS:
        raise ConfigError(
            f"config key 'protocol': release builds the release's FCN-AlexNet and needs an alexnet, got "
            f"{model_name!r}; use protocol=project-fcn"
        )
    if protocol == "release":
        validate_release_seg_keys(config)
    settings: dict[str, dict[str, object]] = {"data": {}, "optim": {}}
    for key, value in SEG_PROTOCOL_DEFAULTS[protocol].items():
        section, name = key.split(".")
        if getattr(getattr(config, section), name) is None:
            settings[section][name] = value
    resolved = OmegaConf.merge(config, {"protocol": protocol, **settings})
    OmegaConf.set_readonly(resolved, True)
    return resolved  # type: ignore[return-value]


VOC_CLS = register_command(
    CommandConfig(
        name="voc-cls",
        schema=VOCClsConfig,
        base_file="voc_cls.yaml",
        preset_kind="voc_cls",
        validate=validate_voc_cls_config,
        run_prefix="voc-cls-",
    )
)
VOC_DET = register_command(
    CommandConfig(
        name="voc-det",
        schema=VOCDetConfig,
        base_file="voc_det.yaml",
        preset_kind="voc_det",
        validate=validate_voc_det_config,
        run_prefix="voc-det-",
    )
)
VOC_SEG = register_command(
    CommandConfig(
        name="voc-seg",
        schema=VOCSegConfig,
        base_file="voc_seg.yaml",
        preset_kind="voc_seg",
        validate=validate_voc_seg_config,
        run_prefix="voc-seg-",
    )
)


def cls_ap_metric(config: VOCClsConfig) -> str:
    """The AP a classification run reports: ``ap_metric``, or its protocol's."""
    return config.ap_metric or PROTOCOL_AP_METRICS[config.protocol]
