"""make dashboard: the panels read keys real runs log, offline it lists them and writes compare's output, and
without the optional extra the online path is one line naming it; for eccv16, alexnet and resnet50. (VOC keys:
tests/transfer/voc/test_voc_cls.py, test_voc_det.py and test_voc_seg.py check them against their CLI runs.)"""

from __future__ import annotations

import csv
import json
import sys
import warnings
from pathlib import Path

import pytest

from lit_colorization.evaluation.report import TABLE_KEY
from lit_colorization.evaluation.rows import TASK as EVAL_COLOR
from lit_colorization.pretrain import module
from lit_colorization.pretrain.pretraining import JOB_TYPE as PRETRAIN
from lit_colorization.runtime.throughput import IMAGES_PER_SECOND_KEY
from lit_colorization.store.results import SCHEMA, append_results
from tests.helpers import read_plot, run_module, tiny_pretrain_overrides
from tests.transfer.probe.test_probe_cli import tiny_probe_overrides
from tests.transfer.test_compare import probe_row, rows_of
from transfer.cli.dashboard import main
from transfer.compare import LINEAR_PROBE
from transfer.dashboard import (
    BAR,
    DEFAULT_DATASETS,
    EXAMPLES_KEY,
    LINE,
    MARKDOWN,
    MEDIA,
    TABLE,
    VOC07,
    dashboard_panels,
    datasets_in_results,
    describe,
    keys_by_job_type,
)

VOC12_SEG = "VOC12 segmentation train -> val"
SEG11 = "VOC11+SBD segmentation train -> seg11valid"


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
        *(
            f"Linear probes (final): {model}, protocol {protocol}, dataset {dataset}"
            for model in ("alexnet", "eccv16")
            for protocol in ("goyal19", "zhang16")
            for dataset in ("imagenet", "places205")
        ),
        f"Pascal VOC: voc-cls, protocol kraehenbuehl16, dataset {VOC07}",
        f"Pascal VOC: voc-cls, protocol finetune, dataset {VOC07}",
        f"Pascal VOC: voc-cls, protocol svm, dataset {VOC07}",
        f"Pascal VOC: voc-det, protocol faster-rcnn-fc67, dataset {VOC07}",
        f"Pascal VOC: voc-det, protocol faster-rcnn-mlp, dataset {VOC07}",
        f"Pascal VOC: voc-seg, protocol release, dataset {SEG11}",
        f"Pascal VOC: voc-seg, protocol project-fcn, dataset {VOC12_SEG}",
        "Pascal VOC: the paper",
        "Colorization",
    ]
    online = [panel for panel in panels if panel.section.endswith("alexnet") and panel.kind == LINE]
    assert [panel.keys for panel in online][-1] == ("online/fc7/top1", "knn/fc7/top1")
    assert {panel.kind for panel in panels} == {LINE, BAR, TABLE, MARKDOWN, MEDIA}
    pretraining = [(panel.kind, panel.keys) for panel in panels if panel.section == "Pretraining"]
    assert (LINE, ("lr-Adam/weights",)) in pretraining and (MEDIA, (EXAMPLES_KEY,)) in pretraining
    assert (LINE, (IMAGES_PER_SECOND_KEY,)) in pretraining
    # Each (protocol, dataset)'s bars read only runs of that protocol on that dataset, beside that protocol's
    # published numbers on that dataset only.
    bars = [panel for panel in panels if panel.kind == BAR and panel.job_type == LINEAR_PROBE]
    assert [(panel.model, panel.protocol, panel.dataset) for panel in bars] == [
        (model, protocol, dataset)
        for model in ("alexnet", "eccv16")
        for protocol in ("goyal19", "zhang16")
        for dataset in ("imagenet", "places205")
    ]
    published = {
        panel.section.removeprefix("Linear probes (final): alexnet, "): panel.text
        for panel in panels
        if panel.kind == MARKDOWN and "alexnet" in panel.section
    }
    assert set(published) == {
        "protocol zhang16, dataset imagenet",
        "protocol zhang16, dataset places205",
        "protocol goyal19, dataset imagenet",
    }  # VISSL publishes no Places205 number
    imagenet, places = (
        published["protocol zhang16, dataset imagenet"],
        published["protocol zhang16, dataset places205"],
    )
    goyal19 = published["protocol goyal19, dataset imagenet"]
    assert "| Split-Brain Tab. 2 (zhang16), ImageNet |" in imagenet and "Places205" not in imagenet
    assert "| Split-Brain Tab. 2 (zhang16), Places205 |" in places and "ImageNet |" not in places
    assert "| colorization | 13.1 | 24.8 | 31.0 | 32.6 | 31.8 |" in imagenet
    assert "| colorization | 16.0 | 25.7 | 29.6 | 30.3 | 29.7 |" in places
    assert "| Places labels | 22.1 |" in places and "ECCV16" not in places and "ECCV16" in imagenet
    assert "VISSL" not in imagenet + places and "Split-Brain" not in goyal19
    assert goyal19.endswith("ImageNet, best layer: 30.39")
    assert not [panel for panel in panels if panel.kind == MARKDOWN and "eccv16" in panel.section]
    [resnet50] = [
        panel for panel in dashboard_panels(["resnet50"]) if panel.kind == MARKDOWN and "50" in panel.section
    ]
    assert "Split-Brain" not in resnet50.text and resnet50.text.endswith("ImageNet, best layer: 40.11")
    [voc] = [panel for panel in panels if panel.kind == MARKDOWN and "VOC" in panel.section]
    assert "| colorization (rescaled) | 61.5 | 65.9 | 46.9 | 35.6 |" in voc.text
    voc_bars = [panel for panel in panels if panel.kind == BAR and panel.section.startswith("Pascal VOC")]
    assert [(panel.job_type, panel.protocol, panel.dataset, panel.keys) for panel in voc_bars] == [
        ("voc-cls", "kraehenbuehl16", VOC07, ("voc/map",)),
        ("voc-cls", "finetune", VOC07, ("voc/map",)),
        ("voc-cls", "svm", VOC07, ("voc/map",)),
        ("voc-det", "faster-rcnn-fc67", VOC07, ("voc/map",)),
        ("voc-det", "faster-rcnn-mlp", VOC07, ("voc/map",)),
        ("voc-seg", "release", SEG11, ("voc/miou",)),
        ("voc-seg", "project-fcn", VOC12_SEG, ("voc/miou",)),
    ]
    listing = describe(panels)
    assert "           reads: train/loss, val/loss  x: trainer/global_step" in listing
    assert (
        "  bar      top-1 (%) per layer, by pretraining run  [linear-probe runs, alexnet, protocol zhang16, dataset places205]"
        in listing
    )
    with pytest.raises(ValueError, match="unknown network"):
        dashboard_panels(["vgg"])


def test_offline_it_lists_the_panels_and_writes_compares_output_without_the_extra(offline_dashboard):
    out, printed = offline_dashboard
    assert "W&B offline" in printed and "reads: online/conv8/top1, knn/conv8/top1" in printed
    listing = (out / "panels.txt").read_text()
    # The store's probe row is on the embedded photos: that dataset gets its sections beside the paper's.
    with_store = dashboard_panels(["eccv16"], {LINEAR_PROBE: ["embedded"]})
    assert listing.count("reads:") == len([panel for panel in with_store if panel.keys])
    assert "== Linear probes (final): eccv16, protocol zhang16, dataset embedded ==" in listing
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


def run_filter(filters: str) -> tuple[tuple[str, str], ...]:
    """A grid's run filter as W&B receives it: wandb-workspaces' own parse of the string, (key, value) per term."""
    from wandb_workspaces.expr import expr_to_filters

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a '<', '>' or '=' it rewrote inside a value warns
        tree = expr_to_filters(filters)
    terms = tree.filters if tree.op == "AND" else [tree]
    return tuple((term.key.name, term.value) for term in terms)


def report_outline(wr, report) -> list[tuple[str, tuple[tuple[str, str], ...], list[str]]]:
    """The built report as (section, its grid's run filter as W&B reads it, the titles or keys of its panels)."""
    outline, section = [], None
    for block in report.blocks:
        if isinstance(block, wr.H2):
            section = block.text
        elif isinstance(block, wr.PanelGrid):
            names = [
                getattr(panel, "title", None) or ",".join(getattr(panel, "media_keys", None) or ["markdown"])
                for panel in block.panels
            ]
            outline.append((section, run_filter(block.runsets[0].filters), names))
    return outline


def test_report_is_built_from_the_same_panels_when_the_extra_is_installed():
    wr = pytest.importorskip("wandb_workspaces.reports.v2")
    from transfer.dashboard import build_report

    tiny_voc = "tiny-voc trainval -> test"
    panels = dashboard_panels(["eccv16"], {LINEAR_PROBE: ["embedded"], "voc-det": [tiny_voc]})
    report = build_report(panels, "lit-colorization", "someone", "title")
    grids = [block for block in report.blocks if isinstance(block, wr.PanelGrid)]
    plotted = [panel for grid in grids for panel in grid.panels]
    assert len(plotted) == len(panels)
    read = {key for panel in plotted for key in getattr(panel, "y", None) or getattr(panel, "metrics", [])}
    assert read == {key for panel in panels if panel.kind in (LINE, BAR) for key in panel.keys}
    outline = report_outline(wr, report)
    [(section, runs, pretraining)] = outline[:1]
    assert (section, runs) == ("Pretraining", (("jobType", "pretrain"),))
    assert pretraining == [
        "loss",
        "AuC (validation; gray: the all-gray baseline)",
        "rebalanced AuC (validation)",
        "colourfulness (validation; true: the photos')",
        "learning rate",
        "throughput: training images per second, all devices",
        "validation examples: gray | prediction | ground truth",
    ]
    [throughput] = [panel for panel in grids[0].panels if panel.title.startswith("throughput")]
    assert throughput.y == [IMAGES_PER_SECOND_KEY] and throughput.x == "trainer/global_step"
    # One grid per (network, protocol, dataset): its runs filtered on all three, the paper's numbers beside it.
    probes = [(section, runs, names) for section, runs, names in outline if runs[0][1] == LINEAR_PROBE]
    assert [(section, runs) for section, runs, _ in probes] == [
        (
            f"Linear probes (final): eccv16, protocol {protocol}, dataset {dataset}",
            (("jobType", LINEAR_PROBE), ("model", "eccv16"), ("protocol", protocol), ("dataset", dataset)),
        )
        for protocol in ("goyal19", "zhang16")
        for dataset in ("imagenet", "places205", "embedded")
    ]
    assert all(
        names == ["top-1 (%) per layer, by pretraining run"] for _, _, names in probes
    )  # none published
    # VOC labels hold '>', which the filter parser would rewrite to '>=' if it saw it: W&B gets them intact.
    assert [runs for _, runs, _ in outline if runs[0][1].startswith("voc-")] == [
        *(
            (("jobType", "voc-cls"), ("protocol", protocol), ("dataset", VOC07))
            for protocol in ("kraehenbuehl16", "finetune", "svm")
        ),
        *(
            (("jobType", "voc-det"), ("protocol", protocol), ("dataset", dataset))
            for protocol in ("faster-rcnn-fc67", "faster-rcnn-mlp")
            for dataset in (VOC07, tiny_voc)
        ),
        (("jobType", "voc-seg"), ("protocol", "release"), ("dataset", SEG11)),
        (("jobType", "voc-seg"), ("protocol", "project-fcn"), ("dataset", VOC12_SEG)),
    ]
    alexnet = report_outline(wr, build_report(dashboard_panels(["alexnet"]), "p", "someone", "t"))
    published = {section: names for section, runs, names in alexnet if runs[0][1] == LINEAR_PROBE}
    assert published["Linear probes (final): alexnet, protocol zhang16, dataset places205"] == [
        "top-1 (%) per layer, by pretraining run",
        "markdown",
    ]
    assert published["Linear probes (final): alexnet, protocol goyal19, dataset places205"] == [
        "top-1 (%) per layer, by pretraining run"
    ]
    media = [panel for panel in plotted if isinstance(panel, wr.MediaBrowser)]
    assert [panel.media_keys for panel in media] == [[EXAMPLES_KEY]]


def test_a_filter_value_reaches_wandb_as_written_whatever_its_characters():
    pytest.importorskip("wandb_workspaces")
    from transfer.dashboard import run_filters

    for dataset in ("VOC07 trainval -> VOC07 test", "a<b=c's \\ é 🙂", "places205"):
        assert run_filter(run_filters("linear-probe", None, "zhang16", dataset)) == (
            ("jobType", "linear-probe"),
            ("protocol", "zhang16"),
            ("dataset", dataset),
        )


def test_the_default_datasets_are_the_names_runs_of_the_papers_presets_record(tmp_path):
    from transfer.probe.probe_config import PROBE, dataset_name
    from transfer.voc.sources import resolve_release_seg_source, resolve_voc_seg_source, resolve_voc_source
    from transfer.voc.voc_config import VOC_CLS, VOC_DET, VOC_SEG

    folder = tmp_path / "data"
    voc = ("VOCdevkit/VOC2007", "VOCdevkit/VOC2012", "VOCdevkit/VOC2011", "benchmark_RELEASE/dataset")
    for path in ("train/cat", "val/cat", *voc):
        (folder / path).mkdir(parents=True)
    probe = [
        dataset_name(PROBE.load(preset, [f"data.root={folder}"])) for preset in ("imagenet", "places205")
    ]
    assert tuple(probe) == DEFAULT_DATASETS[LINEAR_PROBE]
    root = [f"data.root={folder}"]
    assert (resolve_voc_source(VOC_CLS.load("voc07", root).data).label,) == DEFAULT_DATASETS["voc-cls"]
    assert (resolve_voc_source(VOC_DET.load("voc07", root).data).label,) == DEFAULT_DATASETS["voc-det"]
    seg = [resolve_voc_seg_source(VOC_SEG.load("voc12", root).data).label]
    seg.insert(0, resolve_release_seg_source(VOC_SEG.load("seg11", root).data).label)
    assert tuple(seg) == DEFAULT_DATASETS["voc-seg"]


def test_the_results_stores_named_datasets_get_sections_of_their_own(tmp_path):
    rows = rows_of(
        probe_row("a", "conv1", 20.0),  # dataset "embedded"
        probe_row("b", "conv1", 20.0, dataset="/data/old/imagenet"),  # before probes named it: not filterable
        {"task": "voc-cls", "dataset": "tiny-voc trainval -> test", "map": 10.0},
        {"task": "eval-color", "dataset": "val"},
    )
    datasets = datasets_in_results(rows)
    assert datasets == {LINEAR_PROBE: ("embedded",), "voc-cls": ("tiny-voc trainval -> test",)}
    sections = {panel.section for panel in dashboard_panels(["alexnet"], datasets)}
    assert "Linear probes (final): alexnet, protocol zhang16, dataset embedded" in sections
    assert "Pascal VOC: voc-cls, protocol svm, dataset tiny-voc trainval -> test" in sections


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
