"""The pretrain command's config: configs/pretrain.yaml, the network's paper recipe, the preset, the overrides.

The network is the one the overrides or the preset name, so its recipe (configs/models/<name>.yaml), and the
schedule ``optim.schedule`` names over it (configs/schedules/<name>/<schedule>.yaml), sit under both. Checks that
need the network (the input sizes it takes) or the devices (precision; the global batch split over them,
lit_colorization/runtime/scaling.py) are made here, before any work.
"""

from __future__ import annotations

from pathlib import Path

from lit_colorization.config.commands import CommandConfig, ExtraLayers, register_command
from lit_colorization.config.loading import (
    CONFIG_DIR,
    ConfigError,
    require,
    require_folder_name,
    validate_trainer_config,
)
from lit_colorization.config.schema import OnlineEvalConfig, PretrainConfig
from lit_colorization.data.data_config import validate_data_config
from lit_colorization.models import create_model, list_models
from lit_colorization.models.data_init import METHODS as FILTER_METHODS
from lit_colorization.pretrain.initialisation import INITIALISATIONS
from lit_colorization.runtime.perf import settings_for
from lit_colorization.runtime.scaling import resolve_scale

PAPER_SCHEDULE = "paper"
SCHEDULES_DIR = CONFIG_DIR / "schedules"


def schedules_of(model_name: str) -> list[str]:
    """The ``optim.schedule`` names ``model_name`` has: the paper's, and one per configs/schedules/<model>/ file."""
    return [PAPER_SCHEDULE, *sorted(path.stem for path in (SCHEDULES_DIR / model_name).glob("*.yaml"))]


def model_recipe(config: PretrainConfig) -> ExtraLayers:
    """The paper recipe of the network the config names, and the named schedule over it if not the paper's."""
    model_name = config.model.name
    if model_name not in list_models():
        raise ConfigError(f"config key 'model.name': unknown model {model_name!r}; valid: {list_models()}")
    files = [CONFIG_DIR / "models" / f"{model_name}.yaml"]
    schedule = config.optim.schedule
    if schedule not in schedules_of(model_name):
        raise ConfigError(
            f"config key 'optim.schedule': {model_name} has no schedule {schedule!r}; "
            f"valid: {schedules_of(model_name)}"
        )
    if schedule != PAPER_SCHEDULE:
        files.append(SCHEDULES_DIR / model_name / f"{schedule}.yaml")
    return ExtraLayers(files=files)


def validate_pretrain_config(config: PretrainConfig) -> None:
    require(config.loss in ("classification", "l2"), "loss", "'classification' or 'l2'", config.loss)
    require(config.targets.k >= 1, "targets.k", "an integer >= 1", config.targets.k)
    require(config.targets.sigma > 0, "targets.sigma", "a positive number", config.targets.sigma)
    require(0 <= config.targets.lam <= 1, "targets.lam", "a number in [0, 1]", config.targets.lam)
    require(
        config.targets.temperature > 0, "targets.temperature", "a positive number", config.targets.temperature
    )
    require(config.trainer.max_steps > 0, "trainer.max_steps", "a positive integer", config.trainer.max_steps)
    require(
        config.trainer.checkpoint_every_n_steps >= 0,
        "trainer.checkpoint_every_n_steps",
        "an integer >= 0",
        config.trainer.checkpoint_every_n_steps,
    )
    require(
        config.trainer.checkpoint_every_minutes >= 0,
        "trainer.checkpoint_every_minutes",
        "a number >= 0",
        config.trainer.checkpoint_every_minutes,
    )
    validate_trainer_config(config.trainer)
    settings_for(config.trainer, config.optim)  # an unknown precision is an error before any work
    require(config.optim.lr > 0, "optim.lr", "a positive number", config.optim.lr)
    require(
        not config.optim.milestone_lrs or len(config.optim.milestone_lrs) == len(config.optim.milestones),
        "optim.milestone_lrs",
        f"one lr per milestone ({len(config.optim.milestones)}) or an empty list",
        list(config.optim.milestone_lrs),
    )
    require(len(config.optim.betas) == 2, "optim.betas", "two numbers", list(config.optim.betas))
    require(
        config.optim.bias_lr_mult > 0, "optim.bias_lr_mult", "a positive number", config.optim.bias_lr_mult
    )
    bias_decay = config.optim.bias_weight_decay
    require(bias_decay is None or bias_decay >= 0, "optim.bias_weight_decay", "null or >= 0", bias_decay)
    require_folder_name("run", config.run, "a run name")
    for optional_file in ("bins_path", "prior_path"):
        value = getattr(config.targets, optional_file)
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"config key 'targets.{optional_file}': file not found: {value}")
    validate_data_config(config.data)
    require(
        config.model.init in INITIALISATIONS,
        "model.init",
        f"one of {INITIALISATIONS.names()}",
        config.model.init,
    )
    require(
        config.model.init_method in FILTER_METHODS,
        "model.init_method",
        f"one of {FILTER_METHODS}",
        config.model.init_method,
    )
    require(config.model.init_images >= 1, "model.init_images", "an integer >= 1", config.model.init_images)
    network = create_model(config.model.name, **config.model.kwargs)
    init_layers = config.model.init_layers
    known = [*network.feature_layers, "logits"]
    require(
        init_layers is None or (bool(init_layers) and set(init_layers) <= set(known)),
        "model.init_layers",
        f"null or a non-empty list of {known}",
        init_layers,
    )
    validate_online_eval_config(config.online_eval, list(network.feature_layers))
    multiple = network.input_multiple
    require(
        config.data.crop_size % multiple == 0,
        "data.crop_size",
        f"a multiple of {multiple}, so that {config.model.name}'s logits sit on the target grid",
        config.data.crop_size,
    )
    resolve_scale(config)  # lr_scaling, reference batch and the split of the global batch over the devices


def validate_online_eval_config(online: OnlineEvalConfig, feature_layers: list[str]) -> None:
    unknown = [layer for layer in online.layers if layer not in feature_layers]
    require(
        not unknown,
        "online_eval.layers",
        f"an empty list (every layer) or layers of the network, from {feature_layers}",
        list(online.layers),
    )
    require(online.lr > 0, "online_eval.lr", "a positive number", online.lr)
    require(0 <= online.momentum < 1, "online_eval.momentum", "a number in [0, 1)", online.momentum)
    require(online.weight_decay >= 0, "online_eval.weight_decay", "a number >= 0", online.weight_decay)
    require(online.knn_k >= 1, "online_eval.knn_k", "an integer >= 1", online.knn_k)
    require(
        online.knn_temperature > 0, "online_eval.knn_temperature", "a positive number", online.knn_temperature
    )
    require(online.knn_bank_size >= 1, "online_eval.knn_bank_size", "an integer >= 1", online.knn_bank_size)


PRETRAIN = register_command(
    CommandConfig(
        name="pretrain",
        schema=PretrainConfig,
        base_file="pretrain.yaml",
        preset_kind="pretrain",
        validate=validate_pretrain_config,
        extra_layers=model_recipe,
        run_prefix="",
    )
)
