"""Bad configs and bad checkpoints through the command lines: one line on stderr, exit status 2, nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from lit_colorization.cli.colorize import main as colorize_main
from lit_colorization.cli.pretrain import main as pretrain_main
from lit_colorization.color import ab_bins
from lit_colorization.config.loading import to_container
from lit_colorization.models import create_model
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.store.checkpoint import write_checkpoint
from tests.helpers import tiny_pretrain_overrides
from transfer.cli.probe import main as probe_main


def one_line_error(main, argv: list[str], capsys) -> str:
    """Runs a CLI's main expecting a user error; returns its single ``error:`` line."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.crop_szie=32"], ["unknown config key 'data.crop_szie'", "did you mean: data.crop_size"]),
        (["trainer.max_steps=ten"], ["trainer.max_steps"]),
        (["data.batch_size=[4]"], ["data.batch_size"]),
        (["trainer.checkpoint_every_n_steps=-1"], ["trainer.checkpoint_every_n_steps", "an integer >= 0"]),
        (["data.source=folder", "data.root=/no/such/folder"], ["/no/such/folder"]),
    ],
)
def test_pretraining_config_errors_start_nothing(tmp_path, capsys, overrides, expected) -> None:
    line = one_line_error(pretrain_main, [*tiny_pretrain_overrides(tmp_path), *overrides], capsys)
    assert all(text in line for text in expected), line
    assert list(tmp_path.iterdir()) == []  # no run folder


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["optim.lrr=0.1"], ["unknown config key 'optim.lrr'", "did you mean: optim.lr"]),
        (["schedule.length=ten"], ["schedule.length"]),
        (["protocol=vissl"], ["'protocol'", "goyal19", "zhang16"]),
        (["data.source=folder", "data.root=/no/such/folder"], ["/no/such/folder"]),
        # goyal19's fixed 9x9 kernel on the 6x6 conv3 of a 112 crop: refused before any run folder exists.
        (
            ["protocol=goyal19", "model_kwargs.width=0.125", "data.crop_size=112", "layer=conv3"],
            ["data.crop_size=112", "average pool 9/1"],
        ),
    ],
)
def test_probe_config_errors_start_nothing(tmp_path, capsys, overrides, expected) -> None:
    argv = ["ckpt=random", f"runs_dir={tmp_path}", f"results={tmp_path / 'results.jsonl'}", *overrides]
    line = one_line_error(probe_main, argv, capsys)
    assert all(text in line for text in expected), line
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- checkpoints


def write_bad_checkpoints(folder: Path) -> dict[str, Path]:
    """A Lightning checkpoint of another project, a truncated one of ours, one of another network, a missing path."""
    foreign = folder / "foreign.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(2, 2)}, "global_step": 3}, foreign)
    config = PRETRAIN.load("sample", tiny_pretrain_overrides(folder))
    whole = write_checkpoint(
        folder / "whole.ckpt", create_model("eccv16", width=0.125), ab_bins(), None, to_container(config)
    )
    truncated = folder / "truncated.ckpt"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    alexnet_config = PRETRAIN.load("sample", [*tiny_pretrain_overrides(folder), "model.name=alexnet"])
    other_network = write_checkpoint(
        folder / "alexnet.ckpt",
        create_model("alexnet", **alexnet_config.model.kwargs),
        ab_bins(),
        None,
        to_container(alexnet_config),
    )
    return {
        "foreign": foreign,
        "truncated": truncated,
        "missing": folder / "missing.ckpt",
        "other_network": other_network,
    }


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory) -> dict[str, Path]:
    return write_bad_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.mark.parametrize("kind", ["foreign", "truncated", "missing", "other_network"])
def test_resume_from_a_bad_checkpoint_names_it(tmp_path, capsys, bad_checkpoints, kind) -> None:
    path = bad_checkpoints[kind]
    line = one_line_error(pretrain_main, [*tiny_pretrain_overrides(tmp_path), f"resume={path}"], capsys)
    assert str(path) in line
    if kind == "other_network":
        assert "model=" in line and "alexnet" in line
    assert list(tmp_path.iterdir()) == []


def test_resume_auto_with_a_truncated_last_checkpoint_names_it(tmp_path, capsys, bad_checkpoints) -> None:
    last = tmp_path / "tiny" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(bad_checkpoints["truncated"].read_bytes())
    line = one_line_error(pretrain_main, [*tiny_pretrain_overrides(tmp_path), "resume=auto"], capsys)
    assert str(last) in line and "truncated or corrupt" in line


@pytest.mark.parametrize("kind", ["foreign", "truncated", "missing"])
def test_colorize_and_probe_name_a_bad_checkpoint(tmp_path, capsys, bad_checkpoints, kind) -> None:
    path = bad_checkpoints[kind]
    photo = tmp_path / "photo.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(photo)
    line = one_line_error(
        colorize_main, ["--ckpt", str(path), "--out", str(tmp_path / "out"), str(photo)], capsys
    )
    assert str(path) in line
    assert not (tmp_path / "out").exists()
    runs = tmp_path / "runs"
    line = one_line_error(probe_main, [f"ckpt={path}", f"runs_dir={runs}", "data.source=synthetic"], capsys)
    assert str(path) in line
    assert not runs.exists()
