"""resume=auto reads the run's own config.yaml: RUN and RESUME alone continue a run with its preset, data and
devices; a differing key on the command line is applied where that is safe and refused in one line otherwise."""

from __future__ import annotations

import shutil

import pytest
import torch
from omegaconf import OmegaConf

from lit_colorization.cli.pretrain import main as pretrain_main
from lit_colorization.config.saved_run import is_safe_to_change, load_command_config, same_setting
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from transfer.probe.probe_config import PROBE


@pytest.fixture()
def copied_run(tiny_pretrain_run, tmp_path):
    """The shared tiny pretraining run (4 steps, synthetic data, a narrow eccv16 on the CPU), copied."""
    shutil.copytree(tiny_pretrain_run, tmp_path / "tiny", ignore=shutil.ignore_patterns("run.lock"))
    return tmp_path / "tiny"


def test_run_and_resume_alone_continue_a_run_with_its_saved_settings(copied_run, capsys):
    runs_dir = copied_run.parent
    # The Makefile passes --preset sample whatever the run was started with: the saved config wins.
    config = load_command_config(PRETRAIN, "sample", [f"runs_dir={runs_dir}", "run=tiny", "resume=auto"])
    assert config.model.kwargs == {"width": 0.125} and config.data.source == "synthetic"
    assert (config.data.crop_size, config.trainer.accelerator, config.trainer.max_steps) == (32, "cpu", 4)
    assert config.runs_dir == str(runs_dir)

    with pytest.raises(SystemExit) as refused:
        pretrain_main([f"runs_dir={runs_dir}", "run=tiny", "resume=auto", "data.crop_size=64"])
    error = capsys.readouterr().err.strip()
    assert refused.value.code == 2 and "\n" not in error
    assert (
        f"config key 'data.crop_size' is 64 on the command line but 32 in {copied_run / 'config.yaml'}"
        in error
    )
    with pytest.raises(SystemExit):
        pretrain_main([f"runs_dir={runs_dir}", "run=tiny", "resume=auto", "trainer.max_steps=2"])
    assert "can only be made longer" in capsys.readouterr().err

    # More steps, another logger and worker count: safe, applied, and the run continues from its step 4.
    pretrain_main(
        [f"runs_dir={runs_dir}", "run=tiny", "resume=auto", "trainer.max_steps=6", "logger.kind=none",
         "data.num_workers=0", "trainer.progress_bar=false"]
    )  # fmt: skip
    last = torch.load(copied_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 6
    saved = OmegaConf.load(copied_run / "config.yaml")
    assert (saved.trainer.max_steps, saved.logger.kind, saved.model.kwargs.width) == (6, "none", 0.125)


def test_without_a_saved_config_or_without_resume_the_command_line_is_the_config(tmp_path):
    fresh = load_command_config(PRETRAIN, "sample", [f"runs_dir={tmp_path}", "run=new", "resume=auto"])
    assert fresh == PRETRAIN.load("sample", [f"runs_dir={tmp_path}", "run=new", "resume=auto"])
    # A probe without run= is named from its checkpoint: no saved config can be found before it is loaded.
    assert load_command_config(PROBE, None, ["resume=auto"]) == PROBE.load(None, ["resume=auto"])


def test_two_spellings_of_one_path_are_the_same_setting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)
    assert same_setting(str(tmp_path), tmp_path.name) and not same_setting(str(tmp_path), "elsewhere")
    assert same_setting(3, 3) and not same_setting("a", "b")


def test_safe_keys():
    assert all(
        map(is_safe_to_change, ("trainer.max_steps", "logger.kind", "logger.project", "data.num_workers"))
    )
    assert not any(
        map(is_safe_to_change, ("data.batch_size", "model.name", "optim.lr", "data.root", "loggers"))
    )
