"""python -m transfer.cli.probe: config defaults and errors, protocols filling the optimiser, the default checkpoint,
runs end to end (per protocol on the embedded photos) with compare."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from lit_colorization.config.loading import ConfigError
from lit_colorization.store.results import SCHEMA, read_results
from tests.helpers import run_module, tiny_synthetic_data
from transfer.cli.compare import main as compare_main
from transfer.cli.probe import main as probe_main
from transfer.compare import compare
from transfer.probe.probe_config import PROBE, dataset_name, probe_optimizer, probe_schedule
from transfer.probe.protocols import GOYAL19, ZHANG16, ProbeSchedule
from transfer.runs import latest_pretrain_checkpoint

REQUIRED_FIELDS = {
    "task",
    "ckpt",
    "pretrain_run",
    "model",
    "layer",
    "protocol",
    "feature_shape",
    "pooled_shape",
    "feature_dim",
    "dataset",
    "epochs",
    "top1",
    "top5",
    "time",
}


def test_defaults_are_the_papers_imagenet_probe(tmp_path):
    config = PROBE.load(None, [])
    assert (config.data.crop_size, config.data.batch_size, config.data.source) == (227, 256, "embedded")
    assert (config.protocol, config.layer, config.ckpt) == ("zhang16", "all", None)
    assert probe_optimizer(config, "alexnet") == ZHANG16.optimizer
    assert probe_schedule(config) == ProbeSchedule("step", 140_000, (40_000, 80_000, 120_000))
    assert config.results == "results/transfer.jsonl"
    imagenet = PROBE.load("imagenet", [f"data.root={tmp_path}"])
    assert (imagenet.protocol, imagenet.data.source) == ("zhang16", "folder")
    sample = PROBE.load("sample", [])
    assert probe_schedule(sample) == ProbeSchedule("epoch", 4, (2, 3))


def test_the_dataset_is_named_by_the_preset_else_by_the_data(tmp_path):
    """What rows, W&B (Config('dataset')) and make compare key a probe by."""
    folder = tmp_path / "ILSVRC2012"
    for split in ("train", "val"):
        (folder / split / "cat").mkdir(parents=True)
    assert dataset_name(PROBE.load("imagenet", [f"data.root={folder}"])) == "imagenet"
    assert dataset_name(PROBE.load("places205", [f"data.root={folder}"])) == "places205"
    assert dataset_name(PROBE.load(None, ["data.source=folder", f"data.root={folder}/"])) == "ILSVRC2012"
    assert dataset_name(PROBE.load("sample", [])) == "embedded"
    assert dataset_name(PROBE.load("sample", ["dataset=photos"])) == "photos"


def test_the_protocol_fills_only_the_keys_left_null():
    goyal19 = PROBE.load(None, ["protocol=goyal19"])
    assert probe_optimizer(goyal19, "alexnet") == GOYAL19.optimizer
    assert probe_optimizer(goyal19, "resnet50").weight_decay == 1e-4
    overridden = PROBE.load(None, ["protocol=goyal19", "optim.lr=0.1", "optim.weight_decay=0"])
    settings = probe_optimizer(overridden, "resnet50")
    assert (settings.lr, settings.weight_decay, settings.nesterov) == (0.1, 0.0, True)
    # A length alone keeps the protocol's milestones at the same fractions; MAX_EPOCHS sets unit and length.
    epochs = PROBE.load(None, ["schedule.unit=epoch", "schedule.length=28"])
    assert probe_schedule(epochs) == ProbeSchedule("epoch", 28, (8, 16, 24))
    short = PROBE.load(None, ["schedule.length=7000"])
    assert probe_schedule(short) == ProbeSchedule("step", 7000, (2000, 4000, 6000))
    explicit = PROBE.load("sample", ["schedule.length=6", "schedule.milestones=[5]"])
    assert probe_schedule(explicit) == ProbeSchedule("epoch", 6, (5,))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=0.1", "did you mean: optim.lr"),
        ("schedule.milestones=[16,8]", "schedule.milestones"),
        ("optim.momentum=1.5", "optim.momentum"),
        ("schedule.length=0", "schedule.length"),
        ("schedule.unit=epoch", "'schedule.length': expected a number of epochs"),
        ("schedule.unit=day", "schedule.unit"),
        ("protocol=vissl", "'protocol': expected one of ['goyal19', 'zhang16']"),
        ("trainer.max_epochs=3", "unknown config key 'trainer.max_epochs'"),
        ("run=a/b", "'run'"),
        ("layer= ", "'layer'"),
        ("dataset=a/b", "'dataset': expected null or a name without '/'"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        PROBE.load(None, [override])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_default_checkpoint_is_the_most_recent_pretraining_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="make pretrain"):
        latest_pretrain_checkpoint(tmp_path)
    for run, mtime in (("old", 1_000_000), ("new", 2_000_000), ("older", 500_000)):
        ckpt = tmp_path / run / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"x")
        os.utime(ckpt, (mtime, mtime))
    assert latest_pretrain_checkpoint(tmp_path) == tmp_path / "new" / "checkpoints" / "last.ckpt"


def tiny_probe_overrides(runs_dir, results, run: str) -> list[str]:
    return [
        f"runs_dir={runs_dir}",
        f"results={results}",
        f"run={run}",
        *tiny_synthetic_data(batch_size=8),
        "trainer.accelerator=cpu",
        "schedule.unit=epoch",
        "schedule.length=1",
        "trainer.log_every_n_steps=1",
        "trainer.progress_bar=false",
        "logger.kind=csv",
    ]


def test_probe_after_pretraining_appends_rows_that_compare_prints(tiny_pretrain_run, tmp_path, capsys):
    results = tmp_path / "results" / "transfer.jsonl"
    runs_dir = (
        tiny_pretrain_run.parent
    )  # no ckpt: the latest run there, as `make linear-probe` after `make pretrain`
    probe = run_module(
        "transfer.cli.probe", *tiny_probe_overrides(runs_dir, results, "e2e"), "layer=conv1,conv3"
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    rows = [row.data for row in read_results(results).rows]
    assert [row["layer"] for row in rows] == ["conv1", "conv3"]
    assert all(row.keys() >= REQUIRED_FIELDS for row in rows)
    first = rows[0]
    assert (first["task"], first["pretrain_run"], first["model"], first["dataset"]) == (
        "linear-probe", "tiny", "eccv16", "synthetic",
    )  # fmt: skip
    assert first["ckpt"] == str((tiny_pretrain_run / "checkpoints" / "last.ckpt").resolve())
    assert first["epochs"] == 1 and first["feature_dim"] == 8 * 12 * 12  # eccv16 conv1 at width 0.125
    # No protocol defines eccv16: this project's grid with zhang16's optimiser, labelled as such.
    assert [row["protocol"] for row in rows] == ["zhang16-like"] * 2
    assert first["feature_shape"] == [8, 16, 16] and first["pooled_shape"] == [8, 12, 12]  # conv1 at 32
    assert first["top5_k"] == 4  # 4 synthetic classes: the "top-5" is a top-4 (it always holds)
    assert all(row["schema"] == SCHEMA for row in rows)  # accuracies in percent
    run_dir = runs_dir / "probe-e2e"
    assert_accuracies_recount_from_saved_predictions(rows, run_dir)
    assert json.loads((run_dir / "results.json").read_text()) == rows
    saved = (run_dir / "config.yaml").read_text()
    assert "layer: conv1,conv3" in saved and "\ndataset: synthetic\n" in saved  # as W&B's config has it
    [metrics_file] = run_dir.glob("csv/version_*/metrics.csv")
    with metrics_file.open() as stream:
        columns = next(csv.reader(stream))
    assert {"probe/conv1/top1", "probe/conv3/top5", "probe/conv1/train_loss"} <= set(columns)

    # The same entry point as `python -m transfer.cli.compare`, in this process to spare an interpreter start.
    plot = tmp_path / "probe.png"
    compare_main(["--results", str(results), "--plot", str(plot)])
    printed = capsys.readouterr().out
    [tiny_line] = [line for line in printed.splitlines() if line.startswith("tiny ")]
    # run, data, conv1, conv3, best; each top-1 of these 8 validation images is followed by its "[low, high]"
    assert tiny_line.count("[") == 2
    cells = [cell for cell in tiny_line.split() if not cell.startswith("[") and not cell.endswith("]")]
    assert [cell.rstrip("*") for cell in cells[2:4]] == [f"{row['top1']:.1f}" for row in rows]
    best = max(rows, key=lambda row: row["top1"])["layer"]
    assert cells[4] == best and cells[2 if best == "conv1" else 3].endswith("*")
    # The paper's rows are AlexNet's: they stand beside AlexNet runs only, never beside this eccv16 run.
    assert "paper: colorization" not in printed and plot.stat().st_size > 0
    assert "| tiny | conv1 |" in (plot.parent / "compare.md").read_text()
    assert "eccv16, protocol zhang16-like:" in printed

    with pytest.raises(SystemExit) as exit_info:
        probe_main(tiny_probe_overrides(runs_dir, results, "e2e"))
    assert exit_info.value.code == 2 and "already finished" in capsys.readouterr().err
    assert len(read_results(results).rows) == 2


def assert_accuracies_recount_from_saved_predictions(rows, run_dir) -> None:
    """Each row's top-1 and top-k, counted again by numpy from the labels and ranked classes the run saved."""
    saved = np.load(run_dir / "val_predictions.npz")
    labels = saved["labels"]
    assert len(labels) == rows[0]["val_images"]
    for row in rows:
        ranked = saved[row["layer"]]
        assert ranked.shape == (len(labels), row["top5_k"])
        top1 = 100.0 * np.mean(ranked[:, 0] == labels)
        top_k = 100.0 * np.mean((ranked == labels[:, None]).any(axis=1))
        assert (row["top1"], row["top5"]) == (pytest.approx(top1, abs=1e-3), pytest.approx(top_k, abs=1e-3))


# At width 0.125 the standard AlexNet's maps at 227 (docs/reference.md section 4.3 at an eighth of the channels).
NARROW_MAPS = {"conv1": [12, 55, 55], "conv2": [32, 27, 27], "conv3": [48, 13, 13], "conv5": [32, 13, 13]}
POOLED_SIDES = {"conv1": 10, "conv2": 6, "conv3": 5, "conv5": 6}


@pytest.mark.parametrize("protocol", ["zhang16", "goyal19"])
def test_each_protocol_probes_the_standard_alexnet_on_the_embedded_photos(protocol, tmp_path, capsys):
    results = tmp_path / "transfer.jsonl"
    probe_main(
        [
            "--preset", "sample", f"protocol={protocol}", "ckpt=random", "model=alexnet",
            "model_kwargs.width=0.125", "layer=conv1,conv2,conv3,conv5", f"runs_dir={tmp_path}",
            f"results={results}", "data.crop_size=227", "data.crops_per_epoch=2", "data.val_crops=1",
            "data.batch_size=10", "data.num_workers=0", "schedule.length=1", "trainer.accelerator=cpu",
            "trainer.progress_bar=false", "logger.kind=csv",
        ]
    )  # fmt: skip
    rows = [row.data for row in read_results(results).rows]
    assert [row["layer"] for row in rows] == list(NARROW_MAPS)
    for row in rows:
        side = POOLED_SIDES[row["layer"]]
        assert (row["protocol"], row["feature_shape"]) == (protocol, NARROW_MAPS[row["layer"]])
        assert row["pooled_shape"] == [row["feature_shape"][0], side, side]
        assert row["feature_dim"] == row["feature_shape"][0] * side * side
        assert (row["num_classes"], row["steps"], row["epochs"]) == (10, 2, 1)  # 10 photos x 2 crops / 10
    run_dir = tmp_path / "probe-random-alexnet-conv1+conv2+conv3+conv5"
    assert rows[0]["top5_k"] == 5  # 10 classes: a top-5 that can miss
    assert_accuracies_recount_from_saved_predictions(rows, run_dir)
    config = (run_dir / "config.yaml").read_text()
    assert f"nesterov: {str(protocol == 'goyal19').lower()}" in config
    assert f"alexnet, protocol {protocol}:" in compare(results, tmp_path / "probe.png")
    printed = capsys.readouterr().out
    assert f"conv1  {protocol}" in printed and "12x55x55 -> dim   1200" in printed


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        probe_main([f"ckpt={tmp_path / 'none.ckpt'}", f"runs_dir={tmp_path}"])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err.strip().splitlines()[-1]
        == f"error: {tmp_path / 'none.ckpt'}: checkpoint file not found"
    )
