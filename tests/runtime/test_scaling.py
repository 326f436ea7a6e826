"""The recipe in global terms: the start line, the split of the global batch, lr scaling and the schedule in images."""

from __future__ import annotations

import pytest

from lit_colorization.config.loading import CONFIG_DIR, ConfigError, load_config
from lit_colorization.config.schema import PretrainConfig
from lit_colorization.pretrain.pretrain_config import PRETRAIN, model_recipe
from lit_colorization.runtime.scaling import (
    WorldSizeCheck,
    devices_per_node,
    format_lr,
    scale_recipe,
    sync_batchnorm,
)
from tests.helpers import bare_trainer, run_module, tiny_pretrain_overrides

BASE = [CONFIG_DIR / "pretrain.yaml"]


def recipe(*overrides: str):
    """The base config under its network's paper recipe (eccv16: global batch 40, lr 3e-5, 450k steps, lr x0.1 at
    200k), layered as the pretrain command layers it; not validated, so that no network is built."""
    first = load_config(PretrainConfig, BASE, overrides)
    return load_config(PretrainConfig, [*BASE, *model_recipe(first).files], overrides)


# The start lines of `make pretrain PRESET=eccv16_imagenet GPUS=g` with the recipe's batch split over the GPUs,
# and with it raised to 40 per GPU (BATCH=40g) without and with lr scaling.
START_LINES = {
    (1, 40, "none"): "global batch 40 = 1 device x 40 | lr 3e-5 (the recipe's, at 40) | "
    "450,000 steps = 18.0M images (recipe: 18.0M)",
    (2, 40, "none"): "global batch 40 = 2 devices x 20 | lr 3e-5 (the recipe's, at 40) | "
    "450,000 steps = 18.0M images (recipe: 18.0M)",
    (8, 40, "none"): "global batch 40 = 8 devices x 5 | lr 3e-5 (the recipe's, at 40) | "
    "450,000 steps = 18.0M images (recipe: 18.0M)",
    (1, 40, "linear"): "global batch 40 = 1 device x 40 | lr 3e-5 (the recipe's, at 40) | "
    "450,000 steps = 18.0M images (recipe: 18.0M)",
    (2, 80, "none"): "global batch 80 = 2 devices x 40 | lr 3e-5 (the recipe's at 40, not scaled: "
    "optim.lr_scaling=none) | 225,000 steps = 18.0M images (recipe: 18.0M)",
    (2, 80, "linear"): "global batch 80 = 2 devices x 40 | lr 6e-5 (linear from 3e-5 at 40) | "
    "225,000 steps = 18.0M images (recipe: 18.0M)",
    (8, 320, "none"): "global batch 320 = 8 devices x 40 | lr 3e-5 (the recipe's at 40, not scaled: "
    "optim.lr_scaling=none) | 56,250 steps = 18.0M images (recipe: 18.0M)",
    (8, 320, "linear"): "global batch 320 = 8 devices x 40 | lr 2.4e-4 (linear from 3e-5 at 40) | "
    "56,250 steps = 18.0M images (recipe: 18.0M)",
    (8, 320, "sqrt"): "global batch 320 = 8 devices x 40 | lr 8.49e-5 (sqrt from 3e-5 at 40) | "
    "56,250 steps = 18.0M images (recipe: 18.0M)",
}


@pytest.mark.parametrize(("devices", "batch", "scaling"), list(START_LINES))
def test_start_line_per_device_count_and_lr_scaling(devices, batch, scaling) -> None:
    scale = scale_recipe(recipe(f"data.batch_size={batch}", f"optim.lr_scaling={scaling}"), devices)
    assert scale.summary() == START_LINES[devices, batch, scaling]
    assert scale.per_device_batch * scale.world_size == scale.global_batch == batch
    assert scale.images == scale.recipe_images == 18_000_000


def test_schedule_is_kept_in_images_and_milestone_lrs_scale_with_the_lr() -> None:
    alexnet = recipe("model.name=alexnet", "data.batch_size=640", "optim.lr_scaling=linear")
    scale = scale_recipe(alexnet, devices=8)  # 80 per GPU: 8 x the recipe's global batch of 80
    assert scale.max_steps == 56_250 and scale.milestones == [30_000, 37_500, 50_000]
    assert scale.lr == pytest.approx(2.4e-4)
    assert scale.milestone_lrs == pytest.approx([8e-5, 2.4e-5, 8e-6])


def test_steps_round_up_and_an_inexact_schedule_shows_exact_image_counts() -> None:
    scale = scale_recipe(recipe("data.batch_size=48", "trainer.max_steps=1000"), devices=2)
    assert scale.max_steps == 834  # 40,000 images / 48, rounded up
    assert scale.summary().endswith("| 834 steps = 40,032 images (recipe: 40,000)")


def test_nodes_multiply_devices() -> None:
    scale = scale_recipe(recipe("data.batch_size=640", "trainer.num_nodes=2", "optim.lr_scaling=linear"), 8)
    assert scale.world_size == 16 and scale.per_device_batch == 40
    assert scale.summary().startswith("global batch 640 = 2 nodes x 8 devices x 40 | lr 4.8e-4 (linear")


def test_a_config_without_reference_batch_is_its_own_recipe() -> None:
    sample = PRETRAIN.load(
        "sample", ["trainer.accelerator=cpu", "data.batch_size=32", "optim.lr_scaling=linear"]
    )
    scale = scale_recipe(sample, devices=1)
    assert (scale.reference_batch, scale.lr, scale.max_steps) == (32, 1e-3, 300)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["trainer.devices=3"],
            "config key 'data.batch_size': the global batch 40 does not split over 3 processes "
            "(trainer.devices 3 x trainer.num_nodes 1); use a multiple of 3",
        ),
        (
            ["trainer.devices=2", "trainer.num_nodes=3"],
            "config key 'data.batch_size': the global batch 40 does not split over 6 processes "
            "(trainer.devices 2 x trainer.num_nodes 3); use a multiple of 6",
        ),
        (["optim.lr_scaling=square"], "config key 'optim.lr_scaling': expected one of none, linear, sqrt"),
        (
            ["optim.reference_batch_size=0"],
            "config key 'optim.reference_batch_size': expected null or an integer",
        ),
        (["trainer.devices=[0,1]"], "config key 'trainer.devices': [0, 1] does not work here"),
    ],
)
def test_bad_splits_and_keys_are_one_line_errors_when_the_config_loads(overrides, message) -> None:
    with pytest.raises(ConfigError) as error:
        PRETRAIN.load(None, ["trainer.accelerator=cpu", *overrides])
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_devices_are_counted_as_lightning_counts_them_on_a_cpu() -> None:
    assert devices_per_node(recipe("trainer.accelerator=cpu").trainer) == 1  # "auto" on a CPU
    assert devices_per_node(recipe("trainer.accelerator=cpu", "trainer.devices=4").trainer) == 4
    assert devices_per_node(recipe("trainer.accelerator=cpu", "trainer.devices='2'").trainer) == 2


def test_lr_format() -> None:
    assert [format_lr(lr) for lr in (3e-5, 2.4e-4, 1e-3, 8.485281e-5, 0.1)] == [
        "3e-5",
        "2.4e-4",
        "1e-3",
        "8.49e-5",
        "1e-1",
    ]


def test_a_launcher_that_starts_another_number_of_processes_is_stopped_before_any_work() -> None:
    scale = scale_recipe(recipe("trainer.accelerator=cpu", "data.batch_size=80"), devices=2)
    trainer = bare_trainer(devices=1)  # what torchrun --nproc_per_node 1 gives a run configured for 2 devices
    with pytest.raises(
        ConfigError, match="the launcher started 1 process but the global batch 80 was split for"
    ):
        WorldSizeCheck(scale).setup(trainer, None, "fit")
    WorldSizeCheck(scale_recipe(recipe("trainer.accelerator=cpu"), devices=1)).setup(trainer, None, "fit")


@pytest.mark.parametrize(
    ("requested", "device", "world_size", "expected"),
    [
        (None, "cuda", 8, True),  # a split batch normalises over the recipe's whole batch
        (None, "cuda", 1, False),
        (None, "cpu", 2, False),  # SyncBatchNorm runs on GPUs only
        (False, "cuda", 8, False),
        (True, "cuda", 1, True),
    ],
)
def test_batchnorm_sees_the_global_batch_on_several_gpus(requested, device, world_size, expected) -> None:
    assert sync_batchnorm(requested, device, world_size) is expected


def test_sync_batchnorm_asked_for_off_cuda_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'trainer.sync_batchnorm'.*needs CUDA"):
        sync_batchnorm(True, "cpu", 2)
    config = PRETRAIN.load(None, ["trainer.sync_batchnorm=true"])
    assert config.trainer.sync_batchnorm is True


def test_cli_refuses_sync_batchnorm_on_a_cpu_in_one_line_before_writing(tmp_path) -> None:
    result = run_module(
        "lit_colorization.cli.pretrain", *tiny_pretrain_overrides(tmp_path), "trainer.sync_batchnorm=true"
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'trainer.sync_batchnorm'" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "tiny").exists()


class TrainerBuilt(Exception):
    """Raised once the pretraining Trainer exists, before any process starts."""


@pytest.mark.parametrize(("devices", "expected"), [(2, True), (1, False)])
def test_sync_batchnorm_reaches_lightnings_trainer_on_a_cuda_run_of_several_processes(
    tmp_path, monkeypatch, devices, expected
) -> None:
    """The resolved trainer.sync_batchnorm (null) is what pretrain() hands Lightning: the device type is patched to
    CUDA, the world size is trainer.devices CPU processes; the Trainer is caught as built, before its fit."""
    from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm

    from lit_colorization.pretrain import pretraining

    built = []
    build_trainer = pretraining.build_trainer

    def build_and_stop(*args, **kwargs):
        built.append(build_trainer(*args, **kwargs))
        raise TrainerBuilt

    monkeypatch.setattr(pretraining, "device_type", lambda accelerator: "cuda")
    monkeypatch.setattr(pretraining, "build_trainer", build_and_stop)
    config = PRETRAIN.load("sample", [*tiny_pretrain_overrides(tmp_path), f"trainer.devices={devices}"])
    assert config.trainer.sync_batchnorm is None
    with pytest.raises(TrainerBuilt):
        pretraining.pretrain(config)
    [trainer] = built
    assert trainer.world_size == devices
    # The strategy converts the network's BatchNorms at set-up with its layer sync (one process has none).
    assert isinstance(getattr(trainer.strategy, "_layer_sync", None), TorchSyncBatchNorm) is expected
