"""The reproduce command's config: ``configs/reproduce.yaml`` then ``key=value`` overrides (the Makefile maps RUN DATA
VOC PLACES MODEL GPUS NODES SCALE PLAN LOGGER to them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lit_colorization.config.commands import CommandConfig, ExtraLayers, register_command
from lit_colorization.config.loading import require, require_folder_name

SCALES = ("paper", "smoke")
# The campaign's settings, saved in runs_dir/<run>/ when it starts: `make reproduce RUN=x` alone continues x.
CAMPAIGN_CONFIG = "reproduce.yaml"
# Every stage, in the order they run (transfer/reproduce/stages.py builds each one's config).
STAGE_NAMES = (
    "prior",
    "pretrain",
    "probe",
    "places-probe",
    "voc-cls-all",
    "voc-cls-fc6",
    "voc-svm",
    "voc-svm-low-shot",
    "voc-det",
    "voc-seg",
    "report",
)


@dataclass
class ReproduceConfig:
    run: str | None = None  # RUN: the campaign's folder runs_dir/<run>/ (required)
    runs_dir: str = "runs"
    data: str | None = None  # DATA: ImageNet root with train/ and val/ class folders (paper scale: required)
    voc: str | None = (
        None  # VOC: the folder holding VOCdevkit/ (VOC2007 and VOC2012); None: the generated VOC
    )
    places: str | None = None  # PLACES: Places205 root with train/ and val/; None: no Places205 probe
    model: str = "alexnet"
    gpus: int | None = None  # GPUS: devices per node of every stage; None: each preset's own (auto)
    nodes: int = 1  # NODES
    scale: str = "paper"  # SCALE: paper (the paper's presets) | smoke (every stage shrunk to seconds, a CPU)
    plan: bool = False  # PLAN=1: print what would run and how long it would take; write nothing
    accelerator: str = "auto"  # trainer.accelerator of every stage
    logger: str = "auto"  # LOGGER: logger.kind of every stage (wandb: one W&B group named after run)
    # Extra key=value overrides of a stage's own config, by stage name: part of its config hash.
    overrides: dict[str, list[str]] = field(default_factory=dict)


def validate_reproduce_config(config: ReproduceConfig) -> None:
    # Imported here: this module is the schema --help reads, which must not import torch.
    from lit_colorization.models import list_models
    from lit_colorization.store.loggers import LOGGER_KINDS

    require(config.run is not None, "run", "a campaign name (make reproduce RUN=<name>)", config.run)
    require_folder_name("run", config.run)
    require(config.scale in SCALES, "scale", f"one of {list(SCALES)}", config.scale)
    require(config.model in list_models(), "model", f"one of {list_models()}", config.model)
    require(config.gpus is None or config.gpus > 0, "gpus", "a positive integer or null", config.gpus)
    require(config.nodes > 0, "nodes", "a positive integer", config.nodes)
    require(config.logger in LOGGER_KINDS, "logger", f"one of {list(LOGGER_KINDS)}", config.logger)
    require(
        config.scale == "smoke" or config.data is not None,
        "data",
        "the ImageNet root (DATA=<folder with train/ and val/>) at scale=paper",
        config.data,
    )
    require(
        config.scale == "smoke" or config.voc is not None,
        "voc",
        "the folder holding VOCdevkit/ (VOC=...) at scale=paper",
        config.voc,
    )
    unknown = sorted(set(config.overrides) - set(STAGE_NAMES))
    require(not unknown, "overrides", f"stage names from {list(STAGE_NAMES)}", unknown)


def campaign_config_path(config: ReproduceConfig) -> Path:
    return Path(config.runs_dir) / str(config.run) / CAMPAIGN_CONFIG


def saved_campaign(first: ReproduceConfig) -> ExtraLayers:
    """The campaign's saved settings, under the command line's: a key given again replaces the saved one."""
    if first.run is None or not campaign_config_path(first).is_file():
        return ExtraLayers()
    return ExtraLayers(files=[campaign_config_path(first)])


REPRODUCE = register_command(
    CommandConfig(
        name="reproduce",
        schema=ReproduceConfig,
        base_file="reproduce.yaml",
        preset_kind=None,
        validate=validate_reproduce_config,
        extra_layers=saved_campaign,
    )
)
