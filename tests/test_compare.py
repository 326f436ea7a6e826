"""transfer.compare: runs x layers tables beside the paper, best layer marked, other tasks tolerated, PNG written."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from lit_colorization.store.results import SCHEMA, ResultRow, append_results
from transfer.cli.compare import main
from transfer.compare import (
    build_sections,
    compare,
    latest_of_each_run,
    paper_series,
    probe_series,
    render,
)


def probe_row(run: str, layer: str, top1: float, model: str = "alexnet", **extra) -> dict:
    return {
        "task": "linear-probe", "pretrain_run": run, "ckpt": f"runs/{run}/checkpoints/last.ckpt", "model": model,
        "layer": layer, "dataset": "embedded", "top1": top1, "top5": min(100.0, top1 + 20), **extra,
    }  # fmt: skip


def rows_of(*dicts: dict) -> list[ResultRow]:
    return [ResultRow(line, data) for line, data in enumerate(dicts, start=1)]


def table_line(text: str, label: str) -> list[str]:
    [line] = [line for line in text.splitlines() if line.startswith(label + " ")]
    return line.split()


def test_runs_are_grouped_per_pretraining_run_and_a_later_row_of_a_layer_wins():
    series, problems = probe_series(
        rows_of(
            probe_row("a", "conv1", 10.0),
            probe_row("b", "conv1", 11.0),
            probe_row("a", "conv2", 20.0),
            probe_row("a", "conv1", 15.0),  # a rerun of layer conv1 for run a
            {"task": "linear-probe", "model": "alexnet", "layer": "conv3"},  # no top1
        )
    )
    assert {one.label: one.top1 for one in series} == {
        "a": {"conv1": 15.0, "conv2": 20.0},
        "b": {"conv1": 11.0},
    }
    assert problems == ["line 5: linear-probe row without a valid top1, skipped"]


def test_table_marks_each_runs_best_layer_and_shows_the_paper_beside_alexnet_runs():
    rows = rows_of(
        probe_row("mine", "conv1", 10.0),
        probe_row("mine", "conv2", 30.0),
        probe_row("mine", "conv3", 20.0),
        probe_row("vgg", "conv4", 40.0, model="eccv16"),
    )
    text = render(build_sections(rows))
    assert table_line(text, "mine") == ["mine", "embedded", "10.0", "30.0*", "20.0", "-", "-", "conv2"]
    assert table_line(text, "paper: colorization") == [
        "paper:", "colorization", "(recalled)", "ImageNet", "(paper)", "12.5", "24.5", "30.4", "31.5*", "30.3", "conv4",
    ]  # fmt: skip
    assert table_line(text, "paper: ImageNet labels")[-2:] == ["50.5*", "conv5"]
    assert table_line(text, "paper: Gaussian random")[-6:] == [
        "11.6",
        "17.1*",
        "16.9",
        "16.3",
        "14.1",
        "conv2",
    ]
    eccv16_table = text.split("eccv16:")[1].split("\n\n")[0]
    assert "paper" not in eccv16_table and table_line(eccv16_table, "vgg")[-2:] == ["40.0*", "conv4"]


def test_other_tasks_get_their_own_section_without_breaking_the_probe_table():
    rows = rows_of(
        {"task": "unlisted-task", "pretrain_run": "mine", "model": "alexnet", "map": 61.2, "epochs": 80},
        probe_row("mine", "conv1", 10.0),
        {"task": "other-task", "pretrain_run": "mine", "model": "alexnet", "map": 46.9},
        {"task": "other-task"},
    )
    titles = [section.title for section in build_sections(rows)]
    assert titles == [
        "ImageNet-style linear probes (frozen features)",
        "other-task (2 rows)",
        "unlisted-task (1 rows)",
    ]
    text = render(build_sections(rows))
    assert "mine (alexnet): map=61.2" in text and "epochs" not in text.split("unlisted-task")[1]
    assert "? (?): no numeric fields" in text
    assert table_line(text.split("== other-task")[0], "mine")[2] == "10.0*"


def test_a_rerun_of_a_crashed_run_replaces_its_rows_and_other_runs_stay():
    # A run killed between appending its rows and writing results.json is rerun under its name.
    voc = {"task": "voc-cls", "pretrain_run": "mine", "model": "alexnet", "ap_metric": "voc07"}
    rows = rows_of(
        {**voc, "run": "first", "map": 0.40},
        {**voc, "run": "other", "map": 0.55},
        {**voc, "run": "first", "map": 0.42},
        {**voc, "map": 0.30},  # no run name: kept as it is
        {**probe_row("mine", "conv1", 10.0), "run": "probe-a"},
        {**probe_row("mine", "conv1", 12.0), "run": "probe-a"},
    )
    assert [row.line for row in latest_of_each_run(rows)] == [2, 3, 4, 6]
    text = render(build_sections(rows))
    voc_lines = text.split("== Pascal VOC07 classification ==")[1].splitlines()
    voc_maps = [line.split()[-1] for line in voc_lines if line.startswith("mine ")]
    assert sorted(voc_maps) == ["30.0", "42.0", "55.0"]
    assert table_line(text.split("== Pascal")[0], "mine")[2] == "12.0*"


def test_a_voc_row_written_before_the_schema_compares_as_the_same_percent(tmp_path):
    results = tmp_path / "transfer.jsonl"
    voc = {
        "task": "voc-cls",
        "model": "alexnet",
        "protocol": "finetune",
        "train_from": "fc6",
        "ap_metric": "voc07",
    }
    append_results(
        results,
        [
            {**voc, "run": "old", "pretrain_run": "before", "map": 0.5834, "ap": {"cat": 0.5834}},
            {
                **voc,
                "run": "new",
                "pretrain_run": "after",
                "schema": SCHEMA,
                "map": 58.34,
                "ap": {"cat": 58.34},
            },
        ],
    )
    text = compare(results, tmp_path / "probe.png")
    assert table_line(text, "before")[-1] == table_line(text, "after")[-1] == "58.3"


def test_compare_prints_the_tables_and_writes_the_plot(tmp_path, capsys):
    results = tmp_path / "transfer.jsonl"
    append_results(
        results, [probe_row("mine", layer, value) for layer, value in (("conv1", 9.0), ("conv2", 14.0))]
    )
    append_results(results, [probe_row("deep", "res3", 21.0, model="resnet50")])
    with results.open("a") as stream:
        stream.write("garbage\n")
    plot = tmp_path / "plots" / "probe.png"
    text = compare(results, plot)
    assert table_line(text, "mine")[2:4] == ["9.0", "14.0*"] and table_line(text, "deep")[2] == "21.0*"
    assert f"{results}:4: not valid JSON" in capsys.readouterr().err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = plt.imread(plot).shape
    assert width > 2 * height  # one panel per network: alexnet (with the paper) and resnet50


def test_paper_rows_are_the_reference_numbers():
    by_label = {one.label: one for one in paper_series()}
    assert by_label["paper: colorization (recalled)"].top1 == {
        "conv1": 12.5, "conv2": 24.5, "conv3": 30.4, "conv4": 31.5, "conv5": 30.3,
    }  # fmt: skip
    assert by_label["paper: ImageNet labels (recalled)"].best_layer == "conv5"


def test_cli_without_results_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--results", str(tmp_path / "none.jsonl")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "no results file yet" in error and "\n" not in error
