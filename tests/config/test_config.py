"""The real configs load, and every kind of mistake is a one-line error naming the key or file."""

import pytest
from lightning.pytorch.callbacks import LearningRateMonitor, TQDMProgressBar

# Each command registers its config where it is defined; importing these modules fills the registry.
import lit_colorization.evaluation.eval_config  # noqa: F401
import transfer.probe.probe_config  # noqa: F401
import transfer.voc.voc_config  # noqa: F401
from lit_colorization.config.commands import COMMANDS
from lit_colorization.config.loading import CONFIG_DIR, ConfigError
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.runtime.trainer import CUDA_PROGRESS_BAR_STEPS, lightning_trainer_args

PRESETS = sorted(p.stem for p in (CONFIG_DIR / "presets" / "pretrain").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads(preset, tmp_path):
    overrides = [f"data.root={tmp_path}"]  # imagenet presets read folders; the path only has to exist
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    config = PRETRAIN.load(preset, overrides if "imagenet" in preset else [])
    assert config.model.name in ("eccv16", "alexnet", "resnet50")


def test_model_recipe_sits_under_preset_and_overrides():
    recipe = PRETRAIN.load("alexnet_imagenet", ["data.source=synthetic", "data.decode=cpu"])
    assert list(recipe.optim.milestone_lrs) == [1e-5, 3e-6, 1e-6] and recipe.data.batch_size == 80
    sample = PRETRAIN.load("sample", ["model.name=alexnet"])
    assert list(sample.optim.betas) == [0.9, 0.999]  # from the alexnet recipe, which the preset leaves alone
    assert list(sample.optim.milestone_lrs) == [] and sample.data.batch_size == 16  # the preset's own
    assert PRETRAIN.load("sample", ["optim.lr=0.5"]).optim.lr == 0.5


def test_unknown_key_names_it_and_suggests_the_closest():
    with pytest.raises(ConfigError) as error:
        PRETRAIN.load("sample", ["optim.learning_rate=1e-3"])
    assert "optim.learning_rate" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"did you mean: targets\.sigma"):
        PRETRAIN.load("sample", ["targets.sigm=3"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_steps=lots", "trainer.max_steps"),
        ("loss=hinge", "'loss'"),
        ("targets.lam=2", "targets.lam"),
        ("model.name=vgg", "model.name"),
        ("targets.prior_path=/no/such/prior.npy", "targets.prior_path"),
        ("data.crop_size=66", "data.crop_size"),
        ("optim.milestone_lrs=[0.1,0.01]", "optim.milestone_lrs"),
        ("noequals", "key=value"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        PRETRAIN.load("sample", [override])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_data_folder_is_an_error_before_any_work():
    with pytest.raises((ValueError, FileNotFoundError), match="/no/such/imagenet"):
        PRETRAIN.load("sample", ["data.source=folder", "data.root=/no/such/imagenet"])


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ConfigError, match="available"):
        PRETRAIN.load("nonexistent", [])


def progress_bars(callbacks):
    return [callback for callback in callbacks if isinstance(callback, TQDMProgressBar)]


def test_progress_bar_updates_every_step_on_a_cpu_and_as_configured():
    # On CUDA every update waits for the device, so the default there is CUDA_PROGRESS_BAR_STEPS.
    cpu = lightning_trainer_args(PRETRAIN.load("sample", []).trainer, callbacks=[LearningRateMonitor()])
    assert [bar.refresh_rate for bar in progress_bars(cpu["callbacks"])] == [1]
    assert isinstance(cpu["callbacks"][0], LearningRateMonitor)
    every_7 = PRETRAIN.load("sample", ["trainer.progress_bar_every_n_steps=7"]).trainer
    assert [bar.refresh_rate for bar in progress_bars(lightning_trainer_args(every_7)["callbacks"])] == [7]
    hidden = PRETRAIN.load("sample", ["trainer.progress_bar=false"]).trainer
    assert progress_bars(lightning_trainer_args(hidden)["callbacks"]) == []
    assert CUDA_PROGRESS_BAR_STEPS > 1


@pytest.mark.parametrize("command", ["pretrain", "linear-probe", "voc-cls", "voc-det"])
def test_progress_bar_steps_below_one_are_refused_when_the_config_loads(command):
    preset = "sample" if command == "pretrain" else None
    with pytest.raises(
        ConfigError, match="'trainer.progress_bar_every_n_steps': expected null or an integer >= 1"
    ):
        COMMANDS.get(command).load(preset, ["trainer.progress_bar_every_n_steps=0"])


def test_every_command_is_registered_once_with_its_base_file():
    assert {"pretrain", "linear-probe", "voc-cls", "voc-det", "eval-color"} <= set(COMMANDS)
    assert all((CONFIG_DIR / command.base_file).is_file() for command in COMMANDS.values())


def test_a_preset_for_a_command_without_presets_is_an_error():
    with pytest.raises(ConfigError, match="eval-color takes no preset"):
        COMMANDS.get("eval-color").load("sample", [])
