"""make reproduce's state machine (skip done, resume interrupted, rerun on a changed config or input, dependents
rerun), its pipeline.json, its one-line config errors and PLAN=1 on a generated tree of empty files."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from lit_colorization.config.loading import ConfigError
from lit_colorization.store.results import SCHEMA, publish_results
from transfer.cli.reproduce import main as reproduce_main
from transfer.compare import PAPER_VOC, VOC_COLUMNS
from transfer.reproduce.pipeline import PipelineStopped, decide, finished_rows, stop_on_signals, supersede
from transfer.reproduce.report import PAPER_VOC_METHOD, measured, paper_value
from transfer.reproduce.reproduce_config import REPRODUCE
from transfer.reproduce.stages import prepare_stage, stage_specs
from transfer.reproduce.state import (
    DONE,
    FAILED,
    RUNNING,
    PipelineState,
    StageRecord,
    config_hash,
    load_state,
)

CONFIG = {"trainer": {"max_steps": 12}, "data": {"crop_size": 64}}
INPUTS = {"checkpoint": "a" * 64}


def finished(status: str = DONE) -> StageRecord:
    return StageRecord(status=status, config_hash=config_hash(CONFIG, INPUTS), config=CONFIG, inputs=INPUTS)


def test_a_finished_stage_is_skipped_and_an_interrupted_one_resumed() -> None:
    same = config_hash(CONFIG, INPUTS)
    assert decide(finished(), CONFIG, INPUTS, same, None).action == "skip"
    assert decide(finished(RUNNING), CONFIG, INPUTS, same, None).action == "resume"
    assert decide(finished(FAILED), CONFIG, INPUTS, same, None).action == "resume"
    assert decide(StageRecord(), CONFIG, INPUTS, same, None).action == "start"


def test_a_changed_config_reruns_the_stage_naming_the_key() -> None:
    changed = {"trainer": {"max_steps": 16}, "data": {"crop_size": 64}}
    decision = decide(finished(), changed, INPUTS, config_hash(changed, INPUTS), None)
    assert decision.action == "rerun"
    assert decision.reason == "its config changed: trainer.max_steps 12 -> 16"
    # An interrupted stage whose config changed starts over too: its last.ckpt belongs to the old config.
    assert decide(finished(RUNNING), changed, INPUTS, config_hash(changed, INPUTS), None).action == "rerun"


def test_a_changed_input_checkpoint_reruns_its_dependents_and_says_which_stage_was_rerun() -> None:
    new_inputs = {"checkpoint": "b" * 64}
    decision = decide(finished(), CONFIG, new_inputs, config_hash(CONFIG, new_inputs), "pretrain")
    assert decision.action == "rerun"
    assert decision.reason == (
        f"pretrain was rerun: its input checkpoint changed (sha256 {'a' * 12} -> {'b' * 12})"
    )
    # A rerun upstream stage that happened to write the same bytes still reruns what was computed from it.
    same = decide(finished(), CONFIG, INPUTS, config_hash(CONFIG, INPUTS), "pretrain")
    assert (same.action, same.reason) == ("rerun", "pretrain was rerun")


def test_state_round_trips_and_a_damaged_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.json"
    state = PipelineState(path)
    state.record("probe").rows.append({"layer": "conv1", "top1": 12.5})
    state.record("probe").status = DONE
    state.save()
    assert not list(tmp_path.glob(".*tmp*"))  # written through a temporary file, renamed into place
    again = load_state(path)
    assert again.stages["probe"].rows == [{"layer": "conv1", "top1": 12.5}]
    assert again.stages["probe"].status == DONE
    path.write_text('{"stages": {"probe": {"status": "halfway"}}}')
    with pytest.raises(ValueError, match="status 'halfway'"):
        load_state(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a pipeline state"):
        load_state(path)


def test_a_superseded_folder_is_moved_aside_never_deleted(tmp_path: Path) -> None:
    folder = tmp_path / "probe-imagenet"
    for number in (1, 2):
        folder.mkdir()
        (folder / "results.json").write_text(str(number))
        assert supersede(folder) == tmp_path / f"probe-imagenet.superseded-{number}"
    assert (tmp_path / "probe-imagenet.superseded-2" / "results.json").read_text() == "2"
    assert supersede(folder) is None


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="config key 'run'"):
        REPRODUCE.load(None, ["scale=smoke"])
    with pytest.raises(ConfigError, match="config key 'data'"):
        REPRODUCE.load(None, ["run=x"])
    with pytest.raises(ConfigError, match="config key 'overrides'"):
        REPRODUCE.load(None, ["run=x", "scale=smoke", "overrides.prober=[layer=conv1]"])


def test_smoke_stages_load_as_their_commands_and_user_overrides_reach_them(tmp_path: Path) -> None:
    config = REPRODUCE.load(
        None, ["run=x", "scale=smoke", f"runs_dir={tmp_path}", "overrides.probe=[schedule.length=5]"]
    )
    specs = stage_specs(config)
    assert [spec.name for spec in specs] == [
        "prior", "pretrain", "probe", "voc-cls-all", "voc-cls-fc6", "voc-svm", "voc-svm-low-shot", "voc-det",
        "voc-seg", "report",
    ]  # fmt: skip
    stages = {spec.name: prepare_stage(spec, config, inputs_written=False) for spec in specs}
    assert stages["probe"].config.schedule.length == 5
    assert stages["probe"].config.layer == "conv1,conv2,conv3,conv4,conv5"
    assert stages["probe"].folder == tmp_path / "x" / "probe-imagenet"
    assert stages["pretrain"].folder == tmp_path / "x" / "pretrain" / "x"
    assert stages["voc-cls-fc6"].config.train_from == "fc6"
    assert stages["voc-svm-low-shot"].config.low_shot is True
    det = stages["voc-det"].config  # protocol null: faster-rcnn-fc67 for the campaign's AlexNet
    assert det.protocol is None and list(det.detector.train_sizes) == [48, 64, 80]
    assert (det.detector.min_size, det.detector.train_max_size) == (64, 128)
    # Where a stage writes is not part of what it computes: the hash leaves it out.
    assert "run" not in stages["probe"].hashed_config() and "ckpt" not in stages["probe"].hashed_config()


def write_empty_tree(root: Path) -> tuple[Path, Path]:
    """ImageNet's layout (3 classes x 5 empty train files, 2 val) and a VOCdevkit's ImageSets."""
    for index in range(3):
        for split, count in (("train", 5), ("val", 2)):
            folder = root / "imagenet" / split / f"n{index:08d}"
            folder.mkdir(parents=True)
            for number in range(count):
                (folder / f"n{index:08d}_{number}.JPEG").touch()
    for year, kind, sets in (
        ("2007", "Main", {"trainval": 7, "test": 4}),
        ("2011", "Segmentation", {"train": 3, "val": 5}),
        ("2012", "Segmentation", {"train": 3, "val": 2}),
    ):
        folder = root / "voc" / "VOCdevkit" / f"VOC{year}" / "ImageSets" / kind
        folder.mkdir(parents=True)
        for name, count in sets.items():
            first = 100 if name == "val" else 0
            (folder / f"{name}.txt").write_text(
                "".join(f"{year}_{i:06d}\n" for i in range(first, first + count))
            )
    # SBD train: 2 of VOC2011's train images, 2 of its val images (so seg11valid is 3) and 4 of its own.
    sbd = root / "voc" / "benchmark_RELEASE" / "dataset"
    sbd.mkdir(parents=True)
    listed = [
        "2011_000000",
        "2011_000001",
        "2011_000100",
        "2011_000101",
        *(f"2011_9{i:05d}" for i in range(4)),
    ]
    (sbd / "train.txt").write_text("".join(f"{image_id}\n" for image_id in listed))
    return root / "imagenet", root / "voc"


def test_plan_prints_a_line_per_stage_and_the_total_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    imagenet, voc = write_empty_tree(tmp_path / "tree")
    runs = tmp_path / "runs"
    reproduce_main(["run=paper", f"data={imagenet}", f"voc={voc}", "gpus=8", "plan=true", f"runs_dir={runs}"])
    out = capsys.readouterr().out
    assert not runs.exists()
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert list(lines) == [
        "prior", "pretrain", "probe", "voc-cls-all", "voc-cls-fc6", "voc-svm", "voc-svm-low-shot", "voc-det",
        "voc-seg", "report", "total",
    ]  # fmt: skip
    assert "images 15 " in lines["pretrain"] and "steps        450,000" in lines["pretrain"]
    assert "steps        140,000" in lines["probe"] and "batch 256 per device, 2048 global" in lines["probe"]
    assert "images 7 train, 4 test" in lines["voc-det"] and "steps        150,000" in lines["voc-det"]
    # The release's lists: VOC2011 train (3) + SBD train (8, 2 of them VOC2011 train) = 9; seg11valid 5 - 2 = 3.
    assert "images 9 train, 3 test" in lines["voc-seg"] and "steps        150,000" in lines["voc-seg"]
    assert "batch 20 per process, 160 global" in lines["voc-seg"]
    assert "8 device(s)" in out and "NVIDIA H200" in out
    hours = {key: float(re.search(r"([\d.]+) h ", line).group(1)) for key, line in lines.items()}
    total = hours.pop("total")
    assert total == pytest.approx(sum(hours.values()), abs=0.01 * len(hours))
    assert lines["pretrain"].split()[1] == ">="  # FLOP-scaled: a lower bound, and says so


def test_a_stop_signal_outside_a_training_loop_ends_the_pipeline_with_status_75() -> None:
    previous = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(PipelineStopped) as stopped, stop_on_signals():
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(5)  # the handler raises at the next bytecode: never reached
    assert stopped.value.code == 75 and stopped.value.signum == signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) == previous  # the handlers before it are back


def test_a_transfer_run_that_finished_before_the_state_was_saved_gives_its_rows(tmp_path: Path) -> None:
    config = REPRODUCE.load(None, ["run=x", "scale=smoke", f"runs_dir={tmp_path}"])
    spec = next(spec for spec in stage_specs(config) if spec.name == "probe")
    stage = prepare_stage(spec, config, inputs_written=False)
    assert finished_rows(stage) is None
    rows = [{"task": "linear-probe", "schema": SCHEMA, "layer": "conv1", "top1": 12.5}]
    stage.folder.mkdir(parents=True)
    publish_results(rows, stage.folder / "results.json", tmp_path / "store.jsonl")
    assert finished_rows(stage) == rows
    (stage.folder / "results.json").write_text("{")
    with pytest.raises(ValueError, match="results.json: not the JSON list"):
        finished_rows(stage)


def test_a_stage_that_fails_is_recorded_failed_with_its_error_and_retried_by_the_same_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "imagenet"
    for split in ("train", "val"):
        (data / split).mkdir(parents=True)
    argv = ["run=f", "scale=smoke", f"data={data}", f"runs_dir={tmp_path / 'runs'}", "accelerator=cpu"]
    for attempt in ("starting", "failed before, resuming"):
        with pytest.raises(SystemExit) as exit_info:
            reproduce_main(argv)
        assert exit_info.value.code == 2
        captured = capsys.readouterr()
        assert f"prior: {attempt}" in captured.out
        assert "error: no image files" in captured.err and f"{data / 'train'}" in captured.err
    prior = load_state(tmp_path / "runs" / "f" / "pipeline.json").stages["prior"]
    assert (prior.status, prior.starts) == (FAILED, 2)
    assert prior.error.startswith("FileNotFoundError: no image files")
    # The campaign's settings were saved when it started: RUN alone continues it, a key given again wins.
    again = REPRODUCE.load(None, ["run=f", f"runs_dir={tmp_path / 'runs'}", "model=eccv16"])
    assert (again.data, again.scale, again.accelerator, again.model) == (str(data), "smoke", "cpu", "eccv16")


def test_the_report_sets_the_papers_detection_number_beside_fc67_rows_only() -> None:
    fc67 = {"protocol": "faster-rcnn-fc67", "layer": "conv5", "map": 12.5}
    mlp = {"protocol": "faster-rcnn-mlp", "layer": "conv5", "map": 12.5}
    assert paper_value("voc-det", fc67) == PAPER_VOC[PAPER_VOC_METHOD][VOC_COLUMNS.index("det")]
    assert paper_value("voc-det", mlp) is None
    assert measured("voc-det", fc67) == ("mAP@0.5, faster-rcnn-fc67 on conv5", 12.5)
