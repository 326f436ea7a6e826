"""The stages of ``make reproduce``: each one is a project command (its config registry entry, its preset, its
library function) with the overrides that place it in the campaign's folder and feed it the stage before.

Layout of ``runs/<RUN>/``: ``prior/prior.npy``, ``pretrain/<RUN>/`` (the pretraining run: named after the campaign,
so every transfer row's ``pretrain_run`` and W&B group is RUN), one ``<task>-<name>/`` folder per transfer stage
(``probe-imagenet``, ``voc-cls-kraehenbuehl16-conv1``, ...), ``transfer.jsonl`` (their rows), ``report/``.

``scale=paper`` uses the paper's presets; ``scale=smoke`` the same commands with every stage shrunk to seconds on a
CPU (``SMOKE``): a narrow network, a few steps, the embedded photos without DATA and the generated VOC without VOC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_colorization.config.commands import CommandConfig
from lit_colorization.config.loading import to_container
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.pretraining import pretrain
from lit_colorization.pretrain.priors import write_prior
from transfer.probe.linear_probe import probe
from transfer.probe.probe_config import PROBE
from transfer.reproduce.reproduce_config import ReproduceConfig
from transfer.voc.cls_task import classify
from transfer.voc.det_task import detect
from transfer.voc.seg_task import segment
from transfer.voc.voc_config import VOC_CLS, VOC_DET, VOC_SEG

PAPER_PROBE_LAYERS = "conv1,conv2,conv3,conv4,conv5"  # the paper's AlexNet table (zhang16)
RESULTS_FILE = "transfer.jsonl"
PRIOR_FILE = "prior.npy"
# Keys that say where a stage writes or how it reports, not what it computes: left out of its config hash.
UNHASHED_KEYS = frozenset(
    {
        "run",
        "runs_dir",
        "resume",
        "results",
        "logger",
        "ckpt",
        "targets.prior_path",
        "data.tiny.cache_dir",
        "trainer.progress_bar",
        "trainer.progress_bar_every_n_steps",
    }
)

# scale=smoke: every stage in seconds on a CPU through the same code path.
SMOKE_NETWORK = ["model.kwargs.width=0.125"]
SMOKE_PRETRAIN = [
    "data.crop_size=64",
    "data.batch_size=8",
    "data.crops_per_epoch=32",
    "data.val_crops=2",
    "data.num_workers=0",
    "trainer.max_steps=12",
    "trainer.val_check_interval=6",
    "trainer.checkpoint_every_n_steps=4",
    "trainer.log_every_n_steps=2",
    "trainer.validate_before_training=false",
    "online_eval.enabled=false",
    "num_val_images_logged=2",
]
SMOKE_PROBE = [
    "data.crop_size=112",
    "data.batch_size=16",
    "data.crops_per_epoch=64",
    "data.val_crops=4",
    "data.num_workers=0",
    "schedule.unit=epoch",
    "schedule.length=3",
    "schedule.milestones=[2]",
    "trainer.log_every_n_steps=2",
    "trainer.checkpoint_every_n_steps=2",
]
SMOKE_VOC2012_DATA = [
    "data.tiny.num_train=6",
    "data.tiny.num_val=6",
    "data.tiny.image_size=64",
    "data.tiny.classes=[car,cat,dog]",
    "data.num_workers=0",
    "data.batch_size=4",
]
SMOKE_VOC_DATA = [*SMOKE_VOC2012_DATA, "data.tiny.num_test=6"]  # VOC2007's test split; VOC2012 has none
SMOKE_VOC_TRAIN = [
    "trainer.max_steps=8",
    "optim.milestones=[6]",
    "trainer.log_every_n_steps=2",
    "trainer.checkpoint_every_n_steps=2",
]
# goyal19's pooling of AlexNet conv5 (the SVMs' features) needs the maps of a standard 227 crop.
SMOKE_SVM = ["image.resize=256", "image.crop=227", "svm.costs=[0.1,1,10]"]
SMOKE: dict[str, list[str]] = {
    "prior": [*SMOKE_NETWORK, *SMOKE_PRETRAIN],
    "pretrain": [*SMOKE_NETWORK, *SMOKE_PRETRAIN],
    "probe": SMOKE_PROBE,
    "places-probe": SMOKE_PROBE,
    "voc-cls-all": [*SMOKE_VOC_DATA, *SMOKE_VOC_TRAIN, "image.test_views=2"],
    "voc-cls-fc6": [*SMOKE_VOC_DATA, *SMOKE_VOC_TRAIN, "image.test_views=2"],
    "voc-svm": [*SMOKE_VOC_DATA, *SMOKE_SVM],
    "voc-svm-low-shot": [*SMOKE_VOC_DATA, *SMOKE_SVM, "svm.low_shot_k=[1,2]", "svm.low_shot_samples=2"],
    # An AlexNet runs faster-rcnn-fc67 (multi-scale training, a single test scale), at the tiny VOC's scale.
    "voc-det": [
        *SMOKE_VOC_DATA,
        *SMOKE_VOC_TRAIN,
        "data.batch_size=2",
        "detector.min_size=64",
        "detector.max_size=96",
        "detector.train_sizes=[48,64,80]",
        "detector.train_max_size=128",
        "detector.anchor_sizes=[16,32]",
    ],
    # The release protocol: whole images one at a time (no data.batch_size), 2 of them per step, no rescaling.
    "voc-seg": [
        *(item for item in SMOKE_VOC2012_DATA if not item.startswith("data.batch_size=")),
        *SMOKE_VOC_TRAIN,
        "optim.iter_size=2",
        "rescale=false",
    ],
}


@dataclass(frozen=True)
class StageSpec:
    """One stage: the command it runs, its preset at each scale, the stage whose output it reads."""

    name: str
    command: CommandConfig | None  # None: the report, which runs no command
    paper_preset: str | None
    smoke_preset: str | None
    needs: str | None  # "prior" (its prior file), "pretrain" (its checkpoint) or None
    summary: str  # what it runs, as make would
    task_folder: str = ""  # the transfer task's folder prefix under runs/<RUN>/ ("probe", "voc-cls", ...)
    run_name: str = ""  # its run=... (the folder is <task_folder>-<run_name>)
    overrides: tuple[str, ...] = ()  # the stage's own protocol keys, at every scale

    def preset(self, config: ReproduceConfig) -> str | None:
        if self.command is PRETRAIN and config.scale == "paper":
            return f"{config.model}_imagenet"
        return self.paper_preset if config.scale == "paper" else self.smoke_preset


def stage_specs(config: ReproduceConfig) -> list[StageSpec]:
    """The stages of this campaign, in order (the Places205 probe only with PLACES)."""
    probe_layers = PAPER_PROBE_LAYERS if config.model == "alexnet" else "all"
    specs = [
        StageSpec("prior", PRETRAIN, None, "sample", None, "make priors (the training set's ab prior)"),
        StageSpec("pretrain", PRETRAIN, None, "sample", "prior", "make pretrain RESUME=auto"),
        StageSpec(
            "probe",
            PROBE,
            "imagenet",
            "sample",
            "pretrain",
            f"make linear-probe PROTOCOL=zhang16 LAYER={probe_layers}",
            "probe",
            "imagenet",
            ("protocol=zhang16", f"layer={probe_layers}"),
        ),
        StageSpec(
            "places-probe",
            PROBE,
            "places205",
            "sample",
            "pretrain",
            f"make linear-probe PROBE_PRESET=places205 PROTOCOL=zhang16 LAYER={probe_layers}",
            "probe",
            "places205",
            ("protocol=zhang16", f"layer={probe_layers}"),
        ),
        StageSpec(
            "voc-cls-all",
            VOC_CLS,
            "voc07",
            None,
            "pretrain",
            "make voc-cls TRAIN_FROM=conv1 (kraehenbuehl16: fine-tune all layers, as the paper's row)",
            "voc-cls",
            "kraehenbuehl16-conv1",
            ("protocol=kraehenbuehl16", "train_from=conv1"),
        ),
        StageSpec(
            "voc-cls-fc6",
            VOC_CLS,
            "voc07",
            None,
            "pretrain",
            "make voc-cls TRAIN_FROM=fc6 (kraehenbuehl16: fine-tune fc6-8, as the paper's row)",
            "voc-cls",
            "kraehenbuehl16-fc6",
            ("protocol=kraehenbuehl16", "train_from=fc6"),
        ),
        StageSpec(
            "voc-svm",
            VOC_CLS,
            "voc07",
            None,
            "pretrain",
            "make voc-cls PROTOCOL=svm",
            "voc-cls",
            "svm",
            ("protocol=svm",),
        ),
        StageSpec(
            "voc-svm-low-shot",
            VOC_CLS,
            "voc07",
            None,
            "pretrain",
            'make voc-cls PROTOCOL=svm ARGS="low_shot=true"',
            "voc-cls",
            "svm-low-shot",
            ("protocol=svm", "low_shot=true"),
        ),
        StageSpec("voc-det", VOC_DET, "voc07", None, "pretrain", "make voc-det", "voc-det", "faster-rcnn"),
        # The paper's segmentation row is the release's FCN-AlexNet (docs/reference.md section 11.6); it needs
        # an alexnet, so another network runs this project's FCN head (protocol project-fcn).
        StageSpec(
            "voc-seg",
            VOC_SEG,
            "seg11" if config.model == "alexnet" else "voc12",
            None,
            "pretrain",
            "make voc-seg PROTOCOL=release (FCN-AlexNet, VOC2011 train + SBD -> seg11valid)"
            if config.model == "alexnet"
            else "make voc-seg PROTOCOL=project-fcn",
            "voc-seg",
            "release" if config.model == "alexnet" else "fcn",
            ("protocol=release",) if config.model == "alexnet" else ("protocol=project-fcn",),
        ),
        StageSpec("report", None, None, None, None, "make compare, and runs/<RUN>/report/report.md"),
    ]
    return [spec for spec in specs if spec.name != "places-probe" or config.places is not None]


@dataclass
class PreparedStage:
    """A stage's loaded config, its folder, its inputs and how to run it."""

    spec: StageSpec
    config: Any  # the command's typed config (None for the report)
    folder: Path
    inputs: dict[str, str] = field(default_factory=dict)  # input file -> path (checksummed by the pipeline)

    def hashed_config(self) -> dict[str, Any]:
        """The resolved config without the keys that only say where it writes (``UNHASHED_KEYS``)."""
        if self.config is None:
            return {}
        return _without(to_container(self.config), UNHASHED_KEYS)


def _without(config: dict[str, Any], keys: frozenset[str], prefix: str = "") -> dict[str, Any]:
    kept = {}
    for key, value in config.items():
        full = f"{prefix}{key}"
        if full in keys:
            continue
        kept[key] = _without(value, keys, f"{full}.") if isinstance(value, dict) else value
    return kept


def campaign_folder(config: ReproduceConfig) -> Path:
    return Path(config.runs_dir) / str(config.run)


def stage_folder(spec: StageSpec, config: ReproduceConfig) -> Path:
    """Where the stage writes: see the module's docstring."""
    root = campaign_folder(config)
    if spec.name == "pretrain":
        return root / "pretrain" / str(config.run)
    if spec.task_folder:
        return root / f"{spec.task_folder}-{spec.run_name}"
    return root / spec.name


def prior_file(config: ReproduceConfig) -> Path:
    return campaign_folder(config) / "prior" / PRIOR_FILE


def checkpoint_file(config: ReproduceConfig) -> Path:
    return campaign_folder(config) / "pretrain" / str(config.run) / "checkpoints" / "last.ckpt"


def _devices(config: ReproduceConfig) -> list[str]:
    devices = [f"trainer.devices={config.gpus}"] if config.gpus is not None else []
    return [f"trainer.accelerator={config.accelerator}", *devices, f"trainer.num_nodes={config.nodes}"]


def stage_overrides(spec: StageSpec, config: ReproduceConfig, inputs_written: bool = True) -> list[str]:
    """The ``key=value`` overrides of the stage's command: data, placement, scale, then the user's own.

    ``inputs_written=False``: without the keys naming files an earlier stage writes (the pretraining's prior,
    which its config checks exists), for checking every config before the first stage and for the plan."""
    root = campaign_folder(config)
    smoke = SMOKE.get(spec.name, []) if config.scale == "smoke" else []
    user = list(config.overrides.get(spec.name, []))
    if spec.command is PRETRAIN:
        data = ["data.source=folder", f"data.root={config.data}"] if config.data else []
        placed = [f"model.name={config.model}", *data, f"run={config.run}", *_devices(config)]
        if spec.name == "prior":
            return [*placed, f"runs_dir={root / 'prior'}", *smoke, *user]
        return [
            *placed,
            f"runs_dir={root / 'pretrain'}",
            *([f"targets.prior_path={prior_file(config)}"] if inputs_written else []),
            "resume=auto",
            f"logger.kind={config.logger}",
            f"logger.group={config.run}",
            *smoke,
            *user,
        ]
    common = [
        f"ckpt={checkpoint_file(config)}",
        f"run={spec.run_name}",
        f"runs_dir={root}",
        f"results={root / RESULTS_FILE}",
        "resume=auto",
        f"logger.kind={config.logger}",
        *_devices(config),
        *spec.overrides,
    ]
    if spec.command is PROBE:
        places = spec.name == "places-probe"
        root_dir = config.places if places else config.data
        # Named as the paper's presets name them at every scale: rows and W&B key the probe by its dataset.
        dataset = f"dataset={'places205' if places else 'imagenet'}"
        data = ["data.source=folder", f"data.root={root_dir}", dataset] if root_dir else []
        return [*common, *data, *smoke, *user]
    data = [f"data.root={config.voc}"] if config.voc else [f"data.tiny.cache_dir={root / 'tiny_voc'}"]
    return [*common, *data, *smoke, *user]


def prepare_stage(spec: StageSpec, config: ReproduceConfig, inputs_written: bool = True) -> PreparedStage:
    """Load the stage's config as its command would (one-line errors name the stage's key); see
    ``stage_overrides`` for ``inputs_written``."""
    folder = stage_folder(spec, config)
    if spec.command is None:
        return PreparedStage(spec, None, folder)
    loaded = spec.command.load(spec.preset(config), stage_overrides(spec, config, inputs_written))
    inputs = {}
    if spec.needs == "prior":
        inputs["prior"] = str(prior_file(config))
    elif spec.needs == "pretrain":
        inputs["checkpoint"] = str(checkpoint_file(config))
    return PreparedStage(spec, loaded, folder, inputs)


StageResult = tuple[dict[str, Any], list[dict[str, Any]]]  # (outputs, results rows)


def _run_prior(stage: PreparedStage) -> StageResult:
    written = write_prior(stage.config, stage.folder / PRIOR_FILE)
    return {"prior": str(written)}, []


def _run_pretrain(stage: PreparedStage) -> StageResult:
    run_dir = pretrain(stage.config)
    return {"checkpoint": str(run_dir / "checkpoints" / "last.ckpt")}, []


def _rows(result: dict[str, Any] | list[dict[str, Any]]) -> StageResult:
    return {}, list(result) if isinstance(result, list) else [result]


RUNNERS: dict[str, Callable[[PreparedStage], StageResult]] = {
    "prior": _run_prior,
    "pretrain": _run_pretrain,
    "probe": lambda stage: _rows(probe(stage.config)),
    "places-probe": lambda stage: _rows(probe(stage.config)),
    "voc-cls-all": lambda stage: _rows(classify(stage.config)),
    "voc-cls-fc6": lambda stage: _rows(classify(stage.config)),
    "voc-svm": lambda stage: _rows(classify(stage.config)),
    "voc-svm-low-shot": lambda stage: _rows(classify(stage.config)),
    "voc-det": lambda stage: _rows(detect(stage.config)),
    "voc-seg": lambda stage: _rows(segment(stage.config)),
}
