"""optim.schedule: eccv16's paper schedule by default, the release's Caffe solver by name (docs/reference.md 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_colorization.config.loading import ConfigError
from lit_colorization.pretrain.pretrain_config import PRETRAIN, schedules_of
from lit_colorization.pretrain.schedules import PiecewiseConstant


def imagenet_root(tmp_path: Path) -> str:
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    return f"data.root={tmp_path}"


def lr_at(config, step: int) -> float:
    optim = config.optim
    factors = [optim.gamma ** (index + 1) for index in range(len(optim.milestones))]
    return optim.lr * PiecewiseConstant(optim.milestones, factors)(step)


def test_the_paper_schedule_is_the_default(tmp_path: Path) -> None:
    config = PRETRAIN.load("eccv16_imagenet", [imagenet_root(tmp_path)])
    assert config.optim.schedule == "paper"
    assert (list(config.optim.milestones), config.optim.gamma, config.trainer.max_steps) == (
        [200_000],
        0.1,
        450_000,
    )


def test_the_release_schedule_follows_its_solver(tmp_path: Path) -> None:
    # train/solver.prototxt: base_lr 3e-5, lr_policy step, gamma 0.1, stepsize 225000, max_iter 500000.
    config = PRETRAIN.load("eccv16_imagenet", [imagenet_root(tmp_path), "optim.schedule=release"])
    assert config.trainer.max_steps == 500_000 and list(config.optim.betas) == [0.9, 0.99]
    solver = {
        step: 3e-5 * 0.1 ** (step // 225_000) for step in (0, 224_999, 225_000, 449_999, 450_000, 499_999)
    }
    assert {step: lr_at(config, step) for step in solver} == pytest.approx(solver, rel=1e-9)


def test_overrides_and_presets_still_sit_over_the_named_schedule(tmp_path: Path) -> None:
    config = PRETRAIN.load(
        "eccv16_imagenet", [imagenet_root(tmp_path), "optim.schedule=release", "trainer.max_steps=450000"]
    )
    assert config.trainer.max_steps == 450_000 and list(config.optim.milestones) == [225_000, 450_000]
    sample = PRETRAIN.load("sample", ["optim.schedule=release"])
    assert list(sample.optim.milestones) == [100_000] and sample.trainer.max_steps == 300  # the preset's own


def test_an_unknown_schedule_is_a_one_line_error_listing_the_valid_ones() -> None:
    assert schedules_of("eccv16") == ["paper", "release"] and schedules_of("alexnet") == ["paper"]
    with pytest.raises(ConfigError) as error:
        PRETRAIN.load("sample", ["optim.schedule=release", "model.name=alexnet"])
    message = str(error.value)
    assert "'optim.schedule'" in message and "['paper']" in message and "\n" not in message
