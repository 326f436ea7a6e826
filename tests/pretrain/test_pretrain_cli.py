"""Pretraining end to end through the CLI, on synthetic data with a narrow network."""

import csv

import numpy as np
import pytest
import torch

from lit_colorization.store.checkpoint import CHECKPOINT_KEY, build_network, read_checkpoint
from tests.helpers import run_module, tiny_pretrain_overrides


def _metrics(run_dir):
    rows = []
    for path in sorted((run_dir / "csv").glob("version_*/metrics.csv")):
        with path.open() as stream:
            rows.extend(csv.DictReader(stream))
    return rows


def test_run_folder_holds_config_prior_checkpoints_images_and_metrics(tiny_pretrain_run):
    assert (tiny_pretrain_run / "config.yaml").is_file()
    prior = np.load(tiny_pretrain_run / "prior.npy")
    assert prior.shape == (313,) and abs(prior.sum() - 1) < 1e-5 and (prior >= 0).all()
    assert (tiny_pretrain_run / "checkpoints" / "last.ckpt").is_file()
    assert list((tiny_pretrain_run / "checkpoints").glob("best-step*.ckpt"))
    assert list((tiny_pretrain_run / "images").glob("val_step*.png"))
    logged = {key for row in _metrics(tiny_pretrain_run) for key, value in row.items() if value}
    expected = {"train/loss", "val/loss", "val/auc", "val/auc_rebal", "val/auc_gray", "val/auc_rebal_gray"}
    assert expected <= logged
    # A fresh run scores the untrained network first, so the curve starts at step 0.
    assert any(row["step"] == "0" and row.get("val/loss") for row in _metrics(tiny_pretrain_run))
    for row in _metrics(tiny_pretrain_run):
        for key in ("val/auc", "val/auc_rebal", "val/auc_gray"):
            if row.get(key):
                assert 0.0 <= float(row[key]) <= 1.0


def test_checkpoint_is_self_describing_and_loads_with_weights_only(tiny_pretrain_run):
    path = tiny_pretrain_run / "checkpoints" / "last.ckpt"
    raw = torch.load(path, map_location="cpu", weights_only=True)
    entry = raw[CHECKPOINT_KEY]
    assert entry["model_name"] == "eccv16" and entry["model_kwargs"]["width"] == 0.125
    assert entry["bins"].shape == (313, 2) and entry["prior"].shape == (313,)
    assert entry["config"]["run"] == "tiny" and isinstance(entry["config"], dict)
    colorizer = read_checkpoint(path)
    network = build_network(colorizer)
    assert colorizer.global_step == 4
    with torch.no_grad():
        logits = network(torch.full((1, 1, 32, 32), 50.0))
    assert logits.shape == (1, 313, 8, 8)


def test_existing_run_is_not_overwritten_and_resume_continues(tmp_path):
    # Its own run: resuming the session's shared run would change what the tests reading it see.
    runs_dir = tmp_path
    first = run_module("lit_colorization.cli.pretrain", *tiny_pretrain_overrides(runs_dir))
    assert first.returncode == 0, first.stderr[-3000:]
    tiny_pretrain_run = runs_dir / "tiny"
    before = (tiny_pretrain_run / "checkpoints" / "last.ckpt").read_bytes()
    refused = run_module("lit_colorization.cli.pretrain", *tiny_pretrain_overrides(runs_dir))
    assert refused.returncode == 2
    assert "RESUME=auto" in refused.stderr and "Traceback" not in refused.stderr
    assert (tiny_pretrain_run / "checkpoints" / "last.ckpt").read_bytes() == before

    resumed = run_module(
        "lit_colorization.cli.pretrain",
        *tiny_pretrain_overrides(runs_dir),
        "resume=auto",
        "trainer.max_steps=6",
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_checkpoint(tiny_pretrain_run / "checkpoints" / "last.ckpt").global_step == 6
    assert (
        len(list((tiny_pretrain_run / "csv").glob("version_*"))) == 2
    )  # the first attempt's metrics are kept


def test_l2_regression_baseline_trains(tmp_path):
    result = run_module(
        "lit_colorization.cli.pretrain",
        *tiny_pretrain_overrides(tmp_path),
        "loss=l2",
        "targets.rebalance=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    colorizer = read_checkpoint(tmp_path / "tiny" / "checkpoints" / "last.ckpt")
    assert colorizer.config["loss"] == "l2" and colorizer.model_kwargs["num_bins"] == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=fast", "optim.lr"),
        ("data.root_dir=/x", "data.root_dir"),
        ("data.source=folder", "data.root"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, override, message):
    result = run_module("lit_colorization.cli.pretrain", *tiny_pretrain_overrides(tmp_path), override)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "tiny").exists()  # nothing started


def test_gpu_decode_path_runs_on_the_cpu_decoder(tmp_path):
    """data.decode=gpu: workers only read JPEG bytes; the device (here the CPU decoder) decodes and crops."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        folder = tmp_path / "images" / split / "things"
        folder.mkdir(parents=True)
        for index in range(count):
            hue = rng.integers(0, 256, 3, dtype=np.uint8)
            image = (np.linspace(0.3, 1.0, 48)[:, None, None] * hue).astype(np.uint8).repeat(40, axis=1)
            Image.fromarray(image).save(folder / f"{index}.jpg", quality=90)
    overrides = [o for o in tiny_pretrain_overrides(tmp_path) if not o.startswith("data.source")]
    result = run_module(
        "lit_colorization.cli.pretrain",
        *overrides,
        "data.source=folder",
        f"data.root={tmp_path / 'images'}",
        "data.decode=gpu",
        "trainer.max_steps=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_checkpoint(tmp_path / "tiny" / "checkpoints" / "last.ckpt").global_step == 2
    assert np.load(tmp_path / "tiny" / "prior.npy").shape == (313,)


def test_priors_command_writes_a_normalised_prior(tmp_path):
    out = tmp_path / "prior.npy"
    result = run_module("lit_colorization.cli.priors", "--out", str(out), *tiny_pretrain_overrides(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    prior = np.load(out)
    assert prior.shape == (313,) and abs(prior.sum() - 1) < 1e-5
    assert prior[np.argmax(prior)] > 1 / 313  # synthetic images have a few dominant hues
