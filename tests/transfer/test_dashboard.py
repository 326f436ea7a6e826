"""make dashboard: the panels read keys real runs log, offline it lists them and writes compare's output, and
without the optional extra the online path is one line naming it; for eccv16, alexnet and resnet50. (VOC keys:
tests/transfer/voc/test_voc_cls.py, test_voc_det.py and test_voc_seg.py check them against their CLI runs.)"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from lit_colorization.evaluation.report import TABLE_KEY
from lit_colorization.evaluation.rows import TASK as EVAL_COLOR
from lit_colorization.pretrain import module
from lit_colorization.pretrain.pretraining import JOB_TYPE as PRETRAIN
from lit_colorization.store.results import SCHEMA, append_results
from tests.helpers import read_plot, run_module, tiny_pretrain_overrides
from tests.transfer.probe.test_probe_cli import tiny_probe_overrides
from tests.transfer.test_compare import probe_row
from transfer.cli.dashboard import main
from transfer.compare import LINEAR_PROBE
from transfer.dashboard import (
    BAR,
    EXAMPLES_KEY,
    LINE,
    MARKDOWN,
    MEDIA,
    TABLE,
    dashboard_panels,
    describe,
    keys_by_job_type,
)


def logged_columns(run_dir: Path) -> set[str]:
    """Every column of a run's CSV logs (what it logged at least once)."""
    columns: set[str] = set()
    for path in run_dir.glob("csv/version_*/metrics.csv"):
        with path.open() as stream:
            columns |= set(next(csv.reader(stream)))
    return columns


@pytest.fixture(scope="module")
def tiny_probe_run(tiny_pretrain_run, tmp_path_factory) -> Path:
    """A tiny linear probe of every eccv16 layer of the tiny pretraining run, through the CLI, CSV logs."""
    folder = tmp_path_factory.mktemp("probe")
    result = run_module(
        "transfer.cli.probe",
        *tiny_probe_overrides(folder, folder / "transfer.jsonl", "dash"),
        f"ckpt={tiny_pretrain_run / 'checkpoints' / 'last.ckpt'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "probe-dash"


@pytest.fixture(scope="module")
def offline_dashboard(tmp_path_factory) -> tuple[Path, str]:
    """``python -m transfer.cli.dashboard`` offline (W&B offline, no key, no extra), for the tiny runs' network,
    with a results store holding one probe row: (its output folder, what it printed)."""
    folder = tmp_path_factory.mktemp("dashboard")
    results = folder / "results" / "transfer.jsonl"
    append_results(results, [{**probe_row("mine", "conv1", 20.0), "schema": SCHEMA}])
    result = run_module(
        "transfer.cli.dashboard",
        "--models",
        "eccv16",
        "--results",
        str(results),
        "--out",
        str(folder / "out"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "out", result.stdout


def test_every_key_the_offline_dashboard_reads_was_logged_by_a_real_run(
    offline_dashboard, tiny_pretrain_run, tiny_probe_run
):
    out, _ = offline_dashboard
    keys: dict[str, set[str]] = {}
    for panel in json.loads((out / "panels.json").read_text()):
        if panel["job_type"] is not None:
            keys.setdefault(panel["job_type"], set()).update(panel["keys"])
    assert keys == keys_by_job_type(dashboard_panels(["eccv16"]))
    pretrain_logged = logged_columns(tiny_pretrain_run)
    # The example images go to W&B only (CSV logs hold no images): the panel reads the module's own key.
    assert EXAMPLES_KEY in keys[PRETRAIN] and EXAMPLES_KEY in Path(module.__file__).read_text()
    curves = keys[PRETRAIN] - {EXAMPLES_KEY}
    assert curves and curves <= pretrain_logged, curves - pretrain_logged
    probe_logged = logged_columns(tiny_probe_run)
    assert keys[LINEAR_PROBE] and keys[LINEAR_PROBE] <= probe_logged, keys[LINEAR_PROBE] - probe_logged
    # The eval-color table is logged to W&B only (never to CSV): the panel reads the writer's own key.
    assert keys[EVAL_COLOR] == {TABLE_KEY}


def test_panels_cover_every_section_and_each_network_gets_its_own_layers():
    panels = dashboard_panels(["alexnet", "eccv16"])
    sections = list(dict.fromkeys(panel.section for panel in panels))
    assert sections == [
        "Pretraining",
        "Online evaluation while pretraining: alexnet",
        "Online evaluation while pretraining: eccv16",
        "Linear probes (final): alexnet, protocol goyal19",
        "Linear probes (final): alexnet, protocol zhang16",
        "Linear probes (final): eccv16, protocol goyal19",
        "Linear probes (final): eccv16, protocol zhang16",
        "Pascal VOC: voc-cls, protocol finetune",
        "Pascal VOC: voc-cls, protocol svm",
        "Pascal VOC: voc-det",
        "Pascal VOC: voc-seg",
        "Pascal VOC: the paper",
        "Colorization",
    ]
    online = [panel for panel in panels if panel.section.endswith("alexnet") and panel.kind == LINE]
    assert [panel.keys for panel in online][-1] == ("online/fc7/top1", "knn/fc7/top1")
    assert {panel.kind for panel in panels} == {LINE, BAR, TABLE, MARKDOWN, MEDIA}
    pretraining = [(panel.kind, panel.keys) for panel in panels if panel.section == "Pretraining"]
    assert (LINE, ("lr-Adam/weights",)) in pretraining and (MEDIA, (EXAMPLES_KEY,)) in pretraining
    # Each protocol's bars read only runs of that protocol, beside that protocol's published numbers only.
    bars = [panel for panel in panels if panel.kind == BAR and panel.job_type == LINEAR_PROBE]
    assert {(panel.model, panel.protocol) for panel in bars} == {
        (model, protocol) for model in ("alexnet", "eccv16") for protocol in ("goyal19", "zhang16")
    }
    [zhang16] = [
        panel
        for panel in panels
        if panel.kind == MARKDOWN and panel.section.endswith("alexnet, protocol zhang16")
    ]
    [goyal19] = [
        panel
        for panel in panels
        if panel.kind == MARKDOWN and panel.section.endswith("alexnet, protocol goyal19")
    ]
    imagenet, places = zhang16.text.split("| Split-Brain Tab. 2 (zhang16), ")[1:]
    assert imagenet.startswith("ImageNet |") and places.startswith("Places205 |")
    assert "| colorization | 13.1 | 24.8 | 31.0 | 32.6 | 31.8 |" in imagenet
    assert "| colorization | 16.0 | 25.7 | 29.6 | 30.3 | 29.7 |" in places
    assert "| Places labels | 22.1 |" in places and "Places labels" not in imagenet
    assert "VISSL" not in zhang16.text and "Split-Brain" not in goyal19.text
    assert goyal19.text.endswith("ImageNet, best layer: 30.39")
    assert not [panel for panel in panels if panel.kind == MARKDOWN and "eccv16" in panel.section]
    [resnet50] = [
        panel for panel in dashboard_panels(["resnet50"]) if panel.kind == MARKDOWN and "50" in panel.section
    ]
    assert "Split-Brain" not in resnet50.text and resnet50.text.endswith("ImageNet, best layer: 40.11")
    [voc] = [panel for panel in panels if panel.kind == MARKDOWN and "VOC" in panel.section]
    assert "| colorization (rescaled) | 61.5 | 65.9 | 46.9 | 35.6 |" in voc.text
    voc_bars = [panel for panel in panels if panel.kind == BAR and panel.section.startswith("Pascal VOC")]
    assert [(panel.job_type, panel.protocol, panel.keys) for panel in voc_bars] == [
        ("voc-cls", "finetune", ("voc/map",)),
        ("voc-cls", "svm", ("voc/map",)),
        ("voc-det", None, ("voc/map",)),
        ("voc-seg", None, ("voc/miou",)),
    ]
    assert "           reads: train/loss, val/loss  x: trainer/global_step" in describe(panels)
    with pytest.raises(ValueError, match="unknown network"):
        dashboard_panels(["vgg"])


def test_offline_it_lists_the_panels_and_writes_compares_output_without_the_extra(offline_dashboard):
    out, printed = offline_dashboard
    assert "W&B offline" in printed and "reads: online/conv8/top1, knn/conv8/top1" in printed
    assert (out / "panels.txt").read_text().count("reads:") == len(
        [panel for panel in dashboard_panels(["eccv16"]) if panel.keys]
    )
    comparison = (out / "comparison.txt").read_text()
    assert "mine" in comparison and "paper: colorization" in comparison
    # A panel per network: alexnet (the store's row, and the papers'), resnet50 (the papers')
    read_plot(out / "linear_probe.png", width=605, height=462)  # one panel: the one (network, protocol) run


def test_online_without_the_extra_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)  # as if not installed: importing it fails
    with pytest.raises(SystemExit) as exit_info:
        main(["--results", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(error) == 1
    assert "'dashboard' extra" in error[0] and "pip install -e '.[dashboard]'" in error[0]
    assert (tmp_path / "out" / "panels.txt").is_file()  # what it could do offline is still written


def test_report_is_built_from_the_same_panels_when_the_extra_is_installed():
    wr = pytest.importorskip("wandb_workspaces.reports.v2")
    from transfer.dashboard import build_report

    panels = dashboard_panels(["eccv16"])
    report = build_report(panels, "lit-colorization", "someone", "title")
    grids = [block for block in report.blocks if isinstance(block, wr.PanelGrid)]
    plotted = [panel for grid in grids for panel in grid.panels]
    assert len(plotted) == len(panels)
    read = {key for panel in plotted for key in getattr(panel, "y", None) or getattr(panel, "metrics", [])}
    assert read == {key for panel in panels if panel.kind in (LINE, BAR) for key in panel.keys}
    filters = [grid.runsets[0].filters for grid in grids]
    assert "JobType = 'pretrain' and Config('model.name') = 'eccv16'" in filters
    assert (
        "JobType = 'linear-probe' and Config('model') = 'eccv16' and Config('protocol') = 'zhang16'"
        in filters
    )
    assert "JobType = 'voc-cls' and Config('protocol') = 'svm'" in filters
    media = [panel for panel in plotted if isinstance(panel, wr.MediaBrowser)]
    assert [panel.media_keys for panel in media] == [[EXAMPLES_KEY]]


@pytest.mark.parametrize(
    "model",
    # ResNet-50 has no narrow variant: its pretraining and 227 x 227 probe take minutes on a busy 2-core CPU.
    ["alexnet", pytest.param("resnet50", marks=pytest.mark.slow)],
)
def test_the_panels_of_alexnet_and_resnet50_read_keys_their_real_runs_logged(model, tmp_path):
    """As for eccv16 above, with each network's own runs: a tiny pretraining (online probes and kNN on every
    feature layer) and a probe of its checkpoint on every standard layer at the protocols' 227 x 227."""
    from lit_colorization.pretrain.pretrain_config import PRETRAIN as PRETRAIN_CONFIG
    from lit_colorization.pretrain.pretraining import pretrain
    from transfer.cli.probe import main as probe_main

    overrides = [o for o in tiny_pretrain_overrides(tmp_path, model) if not o.startswith("model.kwargs")]
    narrow = ["model.kwargs.width=0.125"] if model == "alexnet" else []  # resnet50 has one width
    run_dir = pretrain(
        PRETRAIN_CONFIG.load(
            None,
            [*overrides, f"model.name={model}", *narrow, "data.crop_size=64", "data.synthetic_size=72",
             "trainer.max_steps=2"],
        )
    )  # fmt: skip
    probe_main(
        [
            "--preset", "sample", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", "layer=all",
            f"runs_dir={tmp_path}", f"results={tmp_path / 'transfer.jsonl'}", "run=dash", "data.crop_size=227",
            "data.crops_per_epoch=1", "data.val_crops=1", "data.batch_size=10", "data.num_workers=0",
            "schedule.length=1", "trainer.accelerator=cpu", "trainer.progress_bar=false", "logger.kind=csv",
        ]
    )  # fmt: skip
    keys = keys_by_job_type(dashboard_panels([model]))
    pretrain_logged = logged_columns(run_dir)
    assert {f"knn/{layer}/top1" for layer in create_model_layers(model)} <= keys[PRETRAIN]
    curves = keys[PRETRAIN] - {EXAMPLES_KEY}  # the example images go to W&B only, as above
    assert curves <= pretrain_logged, curves - pretrain_logged
    probe_logged = logged_columns(tmp_path / "probe-dash")
    assert keys[LINEAR_PROBE] and keys[LINEAR_PROBE] <= probe_logged, keys[LINEAR_PROBE] - probe_logged


def create_model_layers(model: str) -> tuple[str, ...]:
    from lit_colorization.models import create_model

    return create_model(model, **({"width": 0.125} if model == "alexnet" else {})).feature_layers
