"""python -m transfer.cli.probe: config defaults and errors, the default checkpoint, and a run end to end with compare."""

from __future__ import annotations

import csv
import json
import os

import pytest

from lit_colorization.config.loading import ConfigError
from lit_colorization.store.results import SCHEMA, read_results
from tests.conftest import run_module, tiny_synthetic_data
from transfer.cli.compare import main as compare_main
from transfer.cli.probe import main as probe_main
from transfer.probe.config import PROBE
from transfer.runs import latest_pretrain_checkpoint

REQUIRED_FIELDS = {
    "task",
    "ckpt",
    "pretrain_run",
    "model",
    "layer",
    "feature_dim",
    "dataset",
    "epochs",
    "top1",
    "top5",
    "time",
}


def test_defaults_are_the_papers_imagenet_probe():
    config = PROBE.load(None, [])
    assert (config.data.crop_size, config.data.batch_size, config.data.source) == (227, 256, "embedded")
    optim = config.optim
    assert (optim.lr, optim.reference_batch_size, optim.momentum, optim.nesterov) == (0.01, 256, 0.9, True)
    assert (optim.weight_decay, list(optim.milestones), optim.gamma) == (5e-4, [8, 16, 24], 0.1)
    assert (config.trainer.max_epochs, config.layer, config.ckpt) == (28, "all", None)
    assert config.results == "results/transfer.jsonl"
    overridden = PROBE.load(None, ["layer=conv3", "trainer.max_epochs=3", "optim.lr=0.1"])
    assert (overridden.layer, overridden.trainer.max_epochs, overridden.optim.lr) == ("conv3", 3, 0.1)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=0.1", "did you mean: optim.lr"),
        ("optim.milestones=[16,8]", "optim.milestones"),
        ("optim.momentum=1.5", "optim.momentum"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("run=a/b", "'run'"),
        ("layer= ", "'layer'"),
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
        "trainer.max_epochs=1",
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
    assert first["top5"] == 100.0  # 4 synthetic classes: top-4 always holds
    assert all(row["schema"] == SCHEMA for row in rows)  # accuracies in percent
    run_dir = runs_dir / "probe-e2e"
    assert json.loads((run_dir / "results.json").read_text()) == rows
    assert "layer: conv1,conv3" in (run_dir / "config.yaml").read_text()
    [metrics_file] = run_dir.glob("csv/version_*/metrics.csv")
    with metrics_file.open() as stream:
        columns = next(csv.reader(stream))
    assert {"probe/conv1/top1", "probe/conv3/top5", "probe/conv1/train_loss"} <= set(columns)

    # The same entry point as `python -m transfer.cli.compare`, in this process to spare an interpreter start.
    plot = tmp_path / "probe.png"
    compare_main(["--results", str(results), "--plot", str(plot)])
    printed = capsys.readouterr().out
    [tiny_line] = [line for line in printed.splitlines() if line.startswith("tiny ")]
    cells = tiny_line.split()  # run, data, conv1, conv3, best
    assert [cell.rstrip("*") for cell in cells[2:4]] == [f"{row['top1']:.1f}" for row in rows]
    best = max(rows, key=lambda row: row["top1"])["layer"]
    assert cells[4] == best and cells[2 if best == "conv1" else 3].endswith("*")
    assert "paper: colorization (recalled)" in printed and plot.stat().st_size > 0

    with pytest.raises(SystemExit) as exit_info:
        probe_main(tiny_probe_overrides(runs_dir, results, "e2e"))
    assert exit_info.value.code == 2 and "already finished" in capsys.readouterr().err
    assert len(read_results(results).rows) == 2


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        probe_main([f"ckpt={tmp_path / 'none.ckpt'}", f"runs_dir={tmp_path}"])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err.strip().splitlines()[-1]
        == f"error: {tmp_path / 'none.ckpt'}: checkpoint file not found"
    )
