"""transfer.compare: runs x layers tables per protocol beside the paper, best layer marked, other tasks tolerated,
PNG written."""

from __future__ import annotations

import csv
import json
import re

import matplotlib.pyplot as plt
import pytest

from lit_colorization.store.results import SCHEMA, ResultRow, append_results
from transfer.cli.compare import main
from transfer.compare import (
    IMAGENET,
    PLACES,
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
        "layer": layer, "dataset": "embedded", "top1": top1, "top5": min(100.0, top1 + 20), "protocol": "zhang16",
        **extra,
    }  # fmt: skip


def rows_of(*dicts: dict) -> list[ResultRow]:
    return [ResultRow(line, data) for line, data in enumerate(dicts, start=1)]


def table_line(text: str, label: str) -> list[str]:
    [line] = [line for line in text.splitlines() if line.startswith(label + " ")]
    return line.split()


def paper_cells(text: str) -> list[list[str]]:
    """The cells of a table's published rows (cells are separated by two or more spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.startswith("paper:")]


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
    assert table_line(text, "mine") == [
        "mine", "embedded", "10.0", "30.0*", "20.0", "-", "-", "conv2", "30.0", "this", "project", "(zhang16)",
    ]  # fmt: skip
    assert table_line(table_of(text, "alexnet, protocol zhang16:"), "paper: colorization") == [
        "paper:", "colorization", "ImageNet", "13.1", "24.8", "31.0", "32.6*", "31.8", "conv4", "32.6",
        "Split-Brain", "Tab.", "2", "(zhang16)",
    ]  # fmt: skip
    # The ECCV16 paper's own row, of its average-pooling probe, stands in that protocol's table.
    assert table_line(table_of(text, "alexnet, protocol eccv16-avgpool:"), "paper: colorization")[3:8] == [
        "12.5", "24.5", "30.4", "31.5*", "30.3",
    ]  # fmt: skip
    assert table_line(text, "paper: ImageNet labels")[-7:-4] == ["50.5*", "conv5", "50.5"]
    assert "protocol goyal19:" not in text  # no goyal19 run of ours: no goyal19 table
    goyal19 = render(build_sections(rows_of(probe_row("mine", "conv1", 10.0, protocol="goyal19"))))
    assert table_line(table_of(goyal19, "alexnet, protocol goyal19:"), "VISSL: colorization")[2:] == [
        "ImageNet", "-", "-", "30.4", "VISSL", "(goyal19)",
    ]  # fmt: skip
    eccv16_table = table_of(text, "eccv16, protocol zhang16:")
    assert "paper" not in eccv16_table and table_line(eccv16_table, "vgg")[-6:] == [
        "40.0*", "conv4", "40.0", "this", "project", "(zhang16)",
    ]  # fmt: skip


def without_protocol(row: dict) -> dict:
    return {key: value for key, value in row.items() if key != "protocol"}


def table_of(text: str, title: str) -> str:
    return text.split(title + "\n")[1].split("\n\n")[0]


def test_each_protocol_has_its_own_table_with_its_own_published_numbers():
    rows = rows_of(
        probe_row("mine", "conv1", 10.0),
        probe_row("mine", "conv1", 14.0, protocol="goyal19"),
        probe_row("mine", "conv5", 25.0, protocol="goyal19"),
        probe_row("mine", "fc6", 20.0, protocol="goyal19-like"),
        *[
            without_protocol(probe_row(run, layer, 21.0))
            for run, layer in (("old", "conv3"), ("older", "conv2"))
        ],
    )
    text = render(build_sections(rows))
    zhang16 = table_of(text, "alexnet, protocol zhang16:")
    goyal19 = table_of(text, "alexnet, protocol goyal19:")
    assert table_line(zhang16, "mine")[2] == "10.0*" and "paper: colorization" in zhang16
    assert "VISSL" not in zhang16 and "paper" not in goyal19
    assert table_line(goyal19, "mine")[2:6] == ["14.0", "25.0*", "conv5", "25.0"]
    assert table_line(goyal19, "VISSL: colorization")[-3:] == ["30.4", "VISSL", "(goyal19)"]
    assert table_line(table_of(text, "alexnet, protocol goyal19-like:"), "mine")[2:4] == ["20.0*", "fc6"]
    unrecorded = table_of(text, "alexnet, protocol unrecorded:")  # rows from before probes named a protocol
    assert {line.split()[0] for line in unrecorded.splitlines()[2:]} == {"old", "older"}


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
    ]  # no VOC run of ours: no VOC table of the paper's
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
    voc_maps = [line.split()[-3] for line in voc_lines if line.startswith("mine ")]
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
    assert (
        table_line(text, "before")[-3] == table_line(text, "after")[-3] == "58.3"
    )  # then the source: this project


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
    """docs/reference.md section 7, transcribed: Split-Brain Table 2 (zhang16), VISSL best layer (goyal19)."""
    imagenet = paper_series(IMAGENET)
    zhang16 = [one for one in imagenet if one.protocol == "zhang16"]
    per_layer = {one.label: tuple(one.top1[f"conv{k}"] for k in range(1, 6)) for one in zhang16}
    assert per_layer == {
        "paper: ImageNet labels": (19.3, 36.3, 44.2, 48.3, 50.5),
        "paper: Gaussian random": (11.6, 17.1, 16.9, 16.3, 14.1),
        "paper: Kraehenbuehl init only": (17.5, 23.0, 24.5, 23.2, 20.6),
        "paper: colorization": (13.1, 24.8, 31.0, 32.6, 31.8),
        "paper: colorization, no rebalancing, 1-hot targets": (12.5, 25.4, 32.4, 33.1, 32.0),
    }
    assert {one.source for one in zhang16} == {"Split-Brain Tab. 2 (zhang16)"}
    eccv16 = [one for one in imagenet if one.protocol == "eccv16-avgpool"]
    assert [(one.label, tuple(one.top1.values()), one.source) for one in eccv16] == [
        ("paper: colorization", (12.5, 24.5, 30.4, 31.5, 30.3), "ECCV16 Tab. 4 (eccv16-avgpool, recalled)")
    ]
    best_only = {one.model: one.best_top1 for one in imagenet if not one.top1}
    assert best_only == {"alexnet": 30.39, "resnet50": 40.11}
    assert {one.source for one in imagenet if not one.top1} == {"VISSL (goyal19)"}
    assert len(imagenet) == len(zhang16) + len(eccv16) + len(best_only)
    places = {one.label: [one.top1[f"conv{k}"] for k in range(1, 6)] for one in paper_series(PLACES)}
    assert places == {
        "paper: Places labels": [22.1, 35.1, 40.2, 43.3, 44.6],
        "paper: ImageNet labels": [22.7, 34.8, 38.4, 39.4, 38.7],
        "paper: Gaussian random": [15.7, 20.3, 19.8, 19.1, 17.5],
        "paper: colorization": [16.0, 25.7, 29.6, 30.3, 29.7],
    }


def test_places_runs_get_the_papers_places_rows_and_only_then():
    imagenet_only = render(build_sections(rows_of(probe_row("mine", "conv1", 10.0))))
    assert "Places" not in imagenet_only
    rows = rows_of(
        probe_row("mine", "conv1", 10.0),
        probe_row("mine", "conv3", 27.5, dataset="/data/places205"),
    )
    sections = {section.title: "\n".join(section.lines) for section in build_sections(rows)}
    places = sections["Places205 linear probes (frozen features)"]
    imagenet = sections["ImageNet-style linear probes (frozen features)"]
    assert table_line(places, "mine")[:2] == ["mine", "places205"] and "27.5*" in table_line(places, "mine")
    assert table_line(places, "paper: colorization")[2:10] == [
        "Places205", "16.0", "25.7", "29.6", "30.3*", "29.7", "conv4", "30.3",
    ]  # fmt: skip
    assert table_line(places, "paper: Places labels")[-7:-4] == ["44.6*", "conv5", "44.6"]
    # Places runs stay out of the ImageNet table, and ImageNet rows out of the Places one.
    assert "27.5" not in imagenet and "10.0" in imagenet
    assert "paper: Kraehenbuehl" not in places and "VISSL" not in places


def test_voc_sections_show_the_papers_table_4_with_its_source():
    voc = {"task": "voc-cls", "pretrain_run": "mine", "model": "alexnet", "ap_metric": "area"}
    rows = rows_of(
        {**voc, "protocol": "kraehenbuehl16", "train_from": "fc6", "map": 0.55},
        {**voc, "task": "voc-det", "detector": "fast-rcnn", "layer": "conv5", "map": 0.40},
        {
            **voc,
            "task": "voc-det",
            "pretrain_run": "fc67",
            "protocol": "faster-rcnn-fc67",
            "layer": "conv5",
            "map": 0.4,
        },
    )
    sections = {section.title: "\n".join(section.lines) for section in build_sections(rows)}
    classification = paper_cells(sections["Pascal VOC07 classification"])
    # The paper's rows stand beside the protocol that produced them, with its AP (docs/reference.md 11.4).
    assert {(row[0], row[2], row[4]): row[5] for row in classification} == {
        ("paper: ImageNet labels", "kraehenbuehl16 from fc6", "area"): "78.9",
        ("paper: colorization (rescaled)", "kraehenbuehl16 from fc6", "area"): "61.5",
        ("paper: ImageNet labels", "kraehenbuehl16 from conv1", "area"): "79.9",
        ("paper: Gaussian random", "kraehenbuehl16 from conv1", "area"): "53.3",
        ("paper: colorization (rescaled)", "kraehenbuehl16 from conv1", "area"): "65.9",
    }
    assert table_line(sections["Pascal VOC07 classification"], "mine")[2:7] == [
        "kraehenbuehl16", "from", "fc6", "?", "area",
    ]  # fmt: skip
    detection = paper_cells(sections["Pascal VOC07 detection (IoU 0.5)"])
    detection_runs = sections["Pascal VOC07 detection (IoU 0.5)"]
    assert table_line(detection_runs, "fc67")[2:5] == ["faster-rcnn-fc67", "on", "conv5"]
    assert table_line(detection_runs, "mine")[2:5] == ["fast-rcnn", "on", "conv5"]  # a row without a protocol
    assert [(row[0], row[5]) for row in detection] == [
        ("paper: ImageNet labels", "56.8"),
        ("paper: Gaussian random", "43.4"),
        ("paper: colorization (rescaled)", "46.9"),
    ]
    assert {row[-1] for row in classification + detection} == {"Split-Brain Tab. 4"}
    table = sections["Pascal VOC, the paper's numbers"]
    assert table_line(table, "ImageNet labels")[2:] == ["78.9", "79.9", "56.8", "48.0"]
    assert table_line(table, "Gaussian random")[2:] == ["-", "53.3", "43.4", "19.8"]
    assert table_line(table, "colorization (rescaled)")[2:] == ["61.5", "65.9", "46.9", "35.6"]


def test_runs_probed_under_two_protocols_stay_apart():
    rows = rows_of(
        probe_row("mine", "conv1", 10.0, protocol="zhang16"),
        probe_row("mine", "conv1", 14.0, protocol="goyal19"),
    )
    series, _ = probe_series(rows)
    assert sorted((one.source, one.top1["conv1"]) for one in series) == [
        ("this project (goyal19)", 14.0),
        ("this project (zhang16)", 10.0),
    ]


def test_cli_without_results_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--results", str(tmp_path / "none.jsonl")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "no results file yet" in error and "\n" not in error


def test_a_small_validation_sets_top1_carries_its_wilson_interval_and_a_large_ones_does_not():
    rows = rows_of(
        probe_row("small", "conv1", 37.5, val_images=80),  # 30 of 80 crops
        probe_row("small", "conv2", 50.0, val_images=80),
        probe_row("large", "conv1", 37.5, val_images=50_000),
        probe_row("old", "conv1", 37.5),  # a row written before val_images was recorded
    )
    text = render(build_sections(rows))
    # Wilson 95% for 30/80 by hand: centre 0.3807, half-width 0.1038 -> [27.7, 48.5].
    assert table_line(text, "small")[2:6] == ["37.5", "[27.7,", "48.5]", "50.0*"]
    assert table_line(text, "large")[2:3] == ["37.5*"] and "[" not in " ".join(table_line(text, "large"))
    assert "[" not in " ".join(table_line(text, "old"))
    assert "95% Wilson interval" in text
    [small] = [one for one in probe_series(rows)[0] if one.label == "small"]
    assert small.interval("conv1") == pytest.approx((27.69, 48.45), abs=0.01)


def test_only_sections_with_a_run_of_ours_are_shown():
    voc_only = rows_of(
        {"task": "voc-cls", "pretrain_run": "mine", "model": "alexnet", "map": 60.0, "train_from": "fc6"}
    )
    titles = [section.title for section in build_sections(voc_only)]
    assert titles == ["Pascal VOC07 classification", "Pascal VOC, the paper's numbers"]


def test_compare_writes_markdown_and_csv_with_the_papers_number_and_the_difference(tmp_path):
    results = tmp_path / "transfer.jsonl"
    rows = [
        {
            "task": "linear-probe",
            "pretrain_run": "mine",
            "model": "alexnet",
            "layer": "conv3",
            "top1": 28.0,
            "protocol": "zhang16",
            "dataset": "/data/imagenet",
        },
        {"task": "voc-cls", "pretrain_run": "mine", "model": "alexnet", "map": 6320, "train_from": "conv1"},
        {
            "task": "voc-cls",
            "pretrain_run": "mine",
            "model": "alexnet",
            "map": 60.5,
            "train_from": "fc6",
            "protocol": "kraehenbuehl16",
        },
    ]
    results.write_text("".join(json.dumps({"schema": SCHEMA, **row}) + "\n" for row in rows))
    text = compare(results, tmp_path / "linear_probe.png")
    markdown = (tmp_path / "compare.md").read_text()
    assert "## linear-probe: alexnet, protocol zhang16, imagenet" in markdown
    assert "| mine | conv3 | 28.0 | 31.0 | -3.0 | Split-Brain Tab. 2 (zhang16) |" in markdown
    assert "| mine | kraehenbuehl16 from fc6 | 60.5 | 61.5 | -1.0 | Split-Brain Tab. 4 |" in markdown
    assert f"- {results}:2: 'map' is 6320, not a percentage in [0, 100], skipped" in markdown
    assert "6320" not in text
    lines = (tmp_path / "compare.csv").read_text().splitlines()
    assert lines[0] == "task,network,protocol,dataset,setting,run,ours,paper,difference,paper_source"
    assert (
        "linear-probe,alexnet,zhang16,imagenet,conv3,mine,28.00,31.0,-3.0,Split-Brain Tab. 2 (zhang16)"
        in lines
    )
    assert len(lines) == 3


def test_one_row_with_an_impossible_top1_is_skipped_and_the_report_still_prints(tmp_path, capsys):
    results = tmp_path / "transfer.jsonl"
    append_results(results, [probe_row("mine", "conv1", 9.0, val_images=50)])
    append_results(results, [probe_row("mine", "conv2", 150.0, val_images=50)])  # its Wilson interval: no
    text = compare(results, tmp_path / "probe.png")
    assert table_line(text, "mine")[2] == "9.0*"
    assert f"{results}:2: 'top1' is 150.0, not a percentage in [0, 100], skipped" in capsys.readouterr().err


def test_only_the_protocol_that_produced_a_paper_number_stands_beside_it(tmp_path):
    """kraehenbuehl16 from fc6/conv1, faster-rcnn-fc67 and the release's segmentation carry the paper's number;
    the project's own protocols (finetune, faster-rcnn-mlp, project-fcn) and other networks carry none."""
    common = {"schema": SCHEMA, "pretrain_run": "mine", "model": "alexnet"}
    rows = [
        {"task": "voc-cls", "protocol": "kraehenbuehl16", "train_from": "conv1", "map": 60.0},
        {"task": "voc-cls", "protocol": "kraehenbuehl16", "train_from": "conv3", "map": 58.0},
        {"task": "voc-cls", "protocol": "finetune", "train_from": "conv1", "map": 55.0},
        {"task": "voc-det", "protocol": "faster-rcnn-fc67", "layer": "conv5", "map": 40.0},
        {"task": "voc-det", "protocol": "faster-rcnn-mlp", "layer": "conv5", "map": 30.0},
        {"task": "voc-seg", "protocol": "release", "crop_offset": 0, "miou": 30.0},
        {"task": "voc-seg", "protocol": "project-fcn", "layer": "fc7", "train_from": "conv1", "miou": 25.0},
        {"task": "voc-seg", "protocol": "release", "crop_offset": 0, "miou": 20.0, "model": "resnet50"},
    ]
    results = tmp_path / "transfer.jsonl"
    results.write_text(
        "".join(json.dumps({**common, "run": str(i), **row}) + "\n" for i, row in enumerate(rows))
    )
    compare(results, tmp_path / "linear_probe.png")
    lines = list(csv.reader((tmp_path / "compare.csv").read_text().splitlines()))[1:]
    paired = sorted((cells[0], cells[2], cells[1], cells[4], cells[7], cells[8]) for cells in lines)
    assert paired == sorted(
        [
            ("voc-cls", "kraehenbuehl16", "alexnet", "kraehenbuehl16 from conv1", "65.9", "-5.9"),
            ("voc-cls", "kraehenbuehl16", "alexnet", "kraehenbuehl16 from conv3", "", ""),
            ("voc-cls", "finetune", "alexnet", "finetune from conv1", "", ""),
            ("voc-det", "faster-rcnn-fc67", "alexnet", "faster-rcnn-fc67 on conv5", "46.9", "-6.9"),
            ("voc-det", "faster-rcnn-mlp", "alexnet", "faster-rcnn-mlp on conv5", "", ""),
            ("voc-seg", "release", "alexnet", "release FCN-AlexNet, crop 0", "35.6", "-5.6"),
            ("voc-seg", "project-fcn", "alexnet", "fcn on fc7, from conv1", "", ""),
            ("voc-seg", "release", "resnet50", "release FCN-AlexNet, crop 0", "", ""),
        ]
    )
