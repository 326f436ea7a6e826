"""The project's W&B dashboard as code: which panels, what each one reads, and the report built from them.

``dashboard_panels`` is the one description of the dashboard: per section, each panel's kind, the runs it shows
(their W&B job type, and network) and the logged keys it reads. ``build_report`` turns it into a
``wandb_workspaces`` report (the optional ``dashboard`` extra); offline, ``transfer.cli.dashboard`` prints the same
list instead. Keys are the ones the code logs: tests/test_dashboard.py checks each against what real runs wrote.

Sections: pretraining curves per run (loss, AuC, rebalanced AuC, colourfulness, learning rate and training
images per second, against Lightning's ``trainer/global_step``; the validation examples), the online probe and kNN
top-1 per layer while pretraining, the final linear-probe top-1 per layer grouped by pretraining run (W&B's run
group: a transfer run's group is its pretraining run), one section per (network, protocol, dataset) beside that
protocol's and dataset's published numbers, VOC07 classification and detection mAP and segmentation mIoU (per protocol), one
section per (task, protocol, dataset), beside the paper's, and colorization metrics (each pretraining run's last
validation, and ``make eval-color``'s table). A transfer run's W&B config names its ``protocol`` and ``dataset``
(a probe: ``dataset``, e.g. imagenet or places205; a VOC run: its rows' dataset label), and each section's runs
are filtered on both, so runs of two protocols or two datasets never share a bar chart.

The datasets: the paper's (``DEFAULT_DATASETS``) and every dataset the results store's rows name
(``datasets_in_results``), so a report built after ``make demo`` also has the embedded photos' section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lit_colorization.evaluation.report import TABLE_KEY as EVAL_COLOR_TABLE
from lit_colorization.evaluation.rows import TASK as EVAL_COLOR
from lit_colorization.models import create_model, list_models
from lit_colorization.pretrain.pretraining import JOB_TYPE as PRETRAIN
from lit_colorization.runtime.throughput import IMAGES_PER_SECOND_KEY
from lit_colorization.store.results import ResultRow
from transfer.compare import (
    ECCV16_TABLE,
    IMAGENET,
    LINEAR_PROBE,
    PAPER_BEST_LAYER,
    PAPER_ECCV16_PROBES,
    PAPER_LAYERS,
    PAPER_PROBES,
    PAPER_VOC,
    PLACES,
    SPLIT_BRAIN_TABLE_2,
    SPLIT_BRAIN_TABLE_4,
    VISSL,
    VOC_CLASSIFICATION,
    VOC_COLUMNS,
    VOC_DETECTION,
    VOC_SEGMENTATION,
    is_places,
)
from transfer.probe.module import STANDARD_LAYERS
from transfer.probe.protocols import GOYAL19, PROTOCOLS, ZHANG16
from transfer.voc.voc_config import CLS_PROTOCOLS, DET_PROTOCOLS, SEG_PROTOCOLS

PROBE_PROTOCOLS = tuple(PROTOCOLS.names())
# The datasets of the paper's tables, as runs of the project's presets name them: the probe presets' ``dataset``
# (configs/presets/probe/imagenet.yaml, places205.yaml); a VOC run's label (transfer/voc/sources.py) with the
# voc07 and voc12 presets' splits (tests/transfer/test_dashboard.py checks both against the code).
VOC07 = "VOC07 trainval -> VOC07 test"
SEG11 = "VOC11+SBD segmentation train -> seg11valid"  # the seg11 preset (protocol release)
VOC12_SEG = "VOC12 segmentation train -> val"  # the voc12 preset (protocol project-fcn)
DEFAULT_DATASETS: dict[str, tuple[str, ...]] = {
    LINEAR_PROBE: ("imagenet", "places205"),
    VOC_CLASSIFICATION: (VOC07,),
    VOC_DETECTION: (VOC07,),
    VOC_SEGMENTATION: (SEG11, VOC12_SEG),
}
VOC_PROTOCOLS = {
    VOC_CLASSIFICATION: CLS_PROTOCOLS,
    VOC_DETECTION: DET_PROTOCOLS,
    VOC_SEGMENTATION: SEG_PROTOCOLS,
}
# A paper dataset only one protocol reads: no section pairs it with the task's other protocols.
PROTOCOL_OF_DATASET = {SEG11: "release", VOC12_SEG: "project-fcn"}

# Where each kind of run's config names its network (pretraining: the model section; a probe: the trunk's name).
MODEL_CONFIG_KEY = {PRETRAIN: "model.name", LINEAR_PROBE: "model"}
STEP_KEY = "trainer/global_step"  # the x axis Lightning's WandbLogger logs beside every metric
VOC_MAP_KEY = "voc/map"  # classification and detection, in [0, 1]
VOC_MIOU_KEY = "voc/miou"  # segmentation, in [0, 1]
LINE, BAR, TABLE, MARKDOWN, MEDIA = "line", "bar", "table", "markdown", "media"
EXAMPLES_KEY = (
    "val/examples"  # the validation grid a pretraining run logs (W&B only: CSV logs hold no images)
)
LR_KEY = "lr-Adam/weights"  # LearningRateMonitor of pretraining's Adam, every step: the weights' group (biases: x bias_lr_mult)
PRETRAINING_CURVES = (
    ("loss", ("train/loss", "val/loss")),
    ("AuC (validation; gray: the all-gray baseline)", ("val/auc", "val/auc_gray")),
    ("rebalanced AuC (validation)", ("val/auc_rebal", "val/auc_rebal_gray")),
    ("colourfulness (validation; true: the photos')", ("val/colorfulness", "val/colorfulness_true")),
)
FINAL_COLORIZATION = (
    ("last validation AuC, per pretraining run", ("val/auc", "val/auc_rebal")),
    ("last validation colourfulness, per pretraining run", ("val/colorfulness", "val/colorfulness_true")),
)


@dataclass(frozen=True)
class Panel:
    section: str
    title: str
    kind: str  # LINE (curves over steps), BAR (each run's last value), TABLE (a logged W&B table), MARKDOWN
    job_type: str | None  # the runs it shows; None for text
    keys: tuple[str, ...] = ()  # the logged keys it reads
    model: str | None = None  # only runs of this network
    group_by_run_group: bool = False  # bars grouped by W&B run group (a transfer run's pretraining run)
    protocol: str | None = None  # only runs of this protocol (their config's ``protocol``)
    dataset: str | None = None  # only runs on this dataset (their config's ``dataset``)
    text: str = field(default="", repr=False)  # MARKDOWN panels


def online_layers(model: str) -> tuple[str, ...]:
    """The layers the online evaluation logs by default: every feature layer of the network."""
    return tuple(create_model(model).feature_layers)


PAPER_PROBE_MODEL = "alexnet"  # the network of the published per-layer rows


def paper_dataset(dataset: str) -> str | None:
    """The paper's table (``IMAGENET`` or ``PLACES``) a probe dataset's runs stand beside; None for others."""
    if is_places(dataset):
        return PLACES
    return IMAGENET if dataset.lower() == "imagenet" else None


def paper_probe_markdown(model: str, protocol: str, dataset: str) -> str:
    """The published linear-probe numbers of ``model`` under ``protocol`` on ``dataset`` (docs/reference.md
    section 7) as markdown: zhang16, Split-Brain Table 2's per-layer AlexNet rows of that dataset
    (``PAPER_PROBES``; on ImageNet also the ECCV16 paper's own row); goyal19, VISSL's best layer on ImageNet.
    "" where that protocol has none for ``model`` on ``dataset``."""
    table = paper_dataset(dataset)
    lines = [f"**Published linear probes of {model}, protocol {protocol}, {table}, top-1 (%)**", ""]
    if protocol == GOYAL19.name:
        if model not in PAPER_BEST_LAYER or table != IMAGENET:
            return ""
        return "\n".join(
            [*lines, f"{VISSL}, colorization, ImageNet, best layer: {PAPER_BEST_LAYER[model]:.2f}"]
        )
    if protocol != ZHANG16.name or model != PAPER_PROBE_MODEL or table is None:
        return ""
    lines += [
        f"| {SPLIT_BRAIN_TABLE_2}, {table} | " + " | ".join(PAPER_LAYERS) + " |",
        "|---" * (len(PAPER_LAYERS) + 1) + "|",
        *(
            f"| {name} | " + " | ".join(f"{value:.1f}" for value in values) + " |"
            for name, values in PAPER_PROBES[table].items()
        ),
    ]
    if table == IMAGENET:
        lines += [
            "",
            f"| {ECCV16_TABLE}, ImageNet | " + " | ".join(PAPER_LAYERS) + " |",
            "|---" * (len(PAPER_LAYERS) + 1) + "|",
            *(
                f"| {name} | " + " | ".join(f"{value:.1f}" for value in values) + " |"
                for name, values in PAPER_ECCV16_PROBES.items()
            ),
            "",
            "zhang16 (the release's bilinear-resize probe, these runs' protocol) produced Split-Brain's rows; "
            "the ECCV16 paper's own table used average pooling (docs/reference.md section 11.8).",
        ]
    return "\n".join(lines)


def paper_voc_markdown() -> str:
    """The published Pascal VOC numbers of the colorization AlexNet and its baselines, as a markdown table."""
    return "\n".join(
        [
            f"**{SPLIT_BRAIN_TABLE_4}: Pascal VOC (%), AlexNet**",
            "",
            "| | " + " | ".join(VOC_COLUMNS) + " |",
            "|---" * (len(VOC_COLUMNS) + 1) + "|",
            *(f"| {name} | {_cells(values)} |" for name, values in PAPER_VOC.items()),
            "",
            "cls: VOC2007 classification mAP (protocol kraehenbuehl16, area AP), det: VOC2007 Fast R-CNN "
            "detection mAP, seg: FCN-AlexNet mIoU (VOC2011+SBD -> seg11valid, the release's protocol). "
            "The runs log voc/map and voc/miou in [0, 1]; make compare prints them in percent.",
        ]
    )


def _cells(values: Sequence[float | None]) -> str:
    return " | ".join("-" if value is None else f"{value:.1f}" for value in values)


def datasets_in_results(rows: Sequence[ResultRow]) -> dict[str, tuple[str, ...]]:
    """The datasets the results store's probe and VOC rows name, per task, in first-seen order; a probe row
    written before probes named their dataset (a folder path) names none W&B could filter on and is left out."""
    found: dict[str, dict[str, None]] = {}
    for row in rows:
        task, dataset = row.data.get("task"), row.data.get("dataset")
        if task in DEFAULT_DATASETS and isinstance(dataset, str) and dataset and "/" not in dataset:
            found.setdefault(task, {})[dataset] = None
    return {task: tuple(datasets) for task, datasets in found.items()}


def dashboard_panels(
    models: Sequence[str] | None = None, datasets: dict[str, Sequence[str]] | None = None
) -> list[Panel]:
    """Every panel of the dashboard, in report order; ``models`` limits the per-network sections (default: all);
    ``datasets`` (task -> dataset names) adds transfer sections to the paper's datasets (``DEFAULT_DATASETS``)."""
    models = list(models) if models else list_models()
    unknown = [model for model in models if model not in list_models()]
    if unknown:
        raise ValueError(f"--models: unknown network(s) {unknown}; valid: {list_models()}")
    per_task = {
        task: tuple(dict.fromkeys([*defaults, *(datasets or {}).get(task, ())]))
        for task, defaults in DEFAULT_DATASETS.items()
    }
    section = "Pretraining"
    panels = [Panel(section, title, LINE, PRETRAIN, keys) for title, keys in PRETRAINING_CURVES]
    panels.append(Panel(section, "learning rate", LINE, PRETRAIN, (LR_KEY,)))
    panels.append(
        Panel(
            section,
            "throughput: training images per second, all devices",
            LINE,
            PRETRAIN,
            (IMAGES_PER_SECOND_KEY,),
        )
    )
    panels.append(
        Panel(
            section, "validation examples: gray | prediction | ground truth", MEDIA, PRETRAIN, (EXAMPLES_KEY,)
        )
    )
    for model in models:
        section = f"Online evaluation while pretraining: {model}"
        panels += [
            Panel(section, f"{layer}: online probe and kNN top-1 (%)", LINE, PRETRAIN, keys, model=model)
            for layer in online_layers(model)
            for keys in [(f"online/{layer}/top1", f"knn/{layer}/top1")]
        ]
    for model in models:
        keys = tuple(f"probe/{layer}/top1" for layer in STANDARD_LAYERS[model])
        for protocol in PROBE_PROTOCOLS:
            for dataset in per_task[LINEAR_PROBE]:
                section = f"Linear probes (final): {model}, protocol {protocol}, dataset {dataset}"
                panels.append(
                    Panel(
                        section,
                        "top-1 (%) per layer, by pretraining run",
                        BAR,
                        LINEAR_PROBE,
                        keys,
                        model,
                        True,
                        protocol,
                        dataset,
                    )
                )
                published = paper_probe_markdown(model, protocol, dataset)
                if published:
                    panels.append(Panel(section, "published numbers", MARKDOWN, None, text=published))
    for title, job_type, key in (
        ("VOC07 classification mAP (0-1), by pretraining run", VOC_CLASSIFICATION, VOC_MAP_KEY),
        ("VOC07 detection mAP (0-1), by pretraining run", VOC_DETECTION, VOC_MAP_KEY),
        ("segmentation mIoU (0-1), by pretraining run", VOC_SEGMENTATION, VOC_MIOU_KEY),
    ):
        for protocol in VOC_PROTOCOLS[job_type]:
            for dataset in per_task[job_type]:
                if PROTOCOL_OF_DATASET.get(dataset, protocol) != protocol:
                    continue
                section = f"Pascal VOC: {job_type}, protocol {protocol}, dataset {dataset}"
                panels.append(Panel(section, title, BAR, job_type, (key,), None, True, protocol, dataset))
    panels.append(
        Panel("Pascal VOC: the paper", "published numbers", MARKDOWN, None, text=paper_voc_markdown())
    )
    section = "Colorization"
    panels += [Panel(section, title, BAR, PRETRAIN, keys) for title, keys in FINAL_COLORIZATION]
    panels.append(
        Panel(
            section,
            "make eval-color: the paper's Table 1 per checkpoint",
            TABLE,
            EVAL_COLOR,
            (EVAL_COLOR_TABLE,),
        )
    )
    return panels


# Characters a value keeps as they are in a W&B filter; any other goes in as a Python escape (see filter_literal).
PLAIN_FILTER_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.,+-/()")


def filter_literal(value: str) -> str:
    """``value`` as a quoted literal of a wandb-workspaces filter string. Its parser rewrites every ``<``, ``>``
    and ``=`` of the string, inside quoted values too (wandb_workspaces/expr.py, ``expr_to_filters``: the VOC label
    ``VOC07 trainval -> VOC07 test`` would become ``... ->= ...``), then reads it with Python's ``ast``: so each
    character outside ``PLAIN_FILTER_CHARACTERS`` goes in as its ``\\u``/``\\U`` escape, which ``ast`` decodes."""
    escaped = "".join(
        character
        if character in PLAIN_FILTER_CHARACTERS
        else (f"\\u{ord(character):04x}" if ord(character) <= 0xFFFF else f"\\U{ord(character):08x}")
        for character in value
    )
    return f"'{escaped}'"


def run_filters(job_type: str, model: str | None, protocol: str | None, dataset: str | None) -> str:
    """The W&B runset filter of a panel grid: the runs of ``job_type``, and of the network, protocol and dataset
    where given (each run's W&B config names them)."""
    filters = f"JobType = {filter_literal(job_type)}"
    if model:
        filters += f" and Config('{MODEL_CONFIG_KEY[job_type]}') = {filter_literal(model)}"
    if protocol:
        filters += f" and Config('protocol') = {filter_literal(protocol)}"
    if dataset:
        filters += f" and Config('dataset') = {filter_literal(dataset)}"
    return filters


def keys_by_job_type(panels: Sequence[Panel]) -> dict[str, set[str]]:
    """The logged keys the dashboard reads, per job type (what each kind of run must log)."""
    keys: dict[str, set[str]] = {}
    for panel in panels:
        if panel.job_type is not None:
            keys.setdefault(panel.job_type, set()).update(panel.keys)
    return keys


def describe(panels: Sequence[Panel]) -> list[str]:
    """The panels as text: per section, each panel's kind, the runs it shows and the keys it reads."""
    lines, section = [], None
    for panel in panels:
        if panel.section != section:
            section = panel.section
            lines += ["", f"== {section} =="]
        which = (
            panel.model,
            panel.protocol and f"protocol {panel.protocol}",
            panel.dataset and f"dataset {panel.dataset}",
        )
        shown = "".join(f", {part}" for part in which if part)
        runs = "" if panel.job_type is None else f"  [{panel.job_type} runs{shown}]"
        lines.append(f"  {panel.kind:<8} {panel.title}{runs}")
        if panel.keys:
            axis = f"  x: {STEP_KEY}" if panel.kind == LINE else ""
            lines.append(f"           reads: {', '.join(panel.keys)}{axis}")
    return lines[1:]


def as_rows(panels: Sequence[Panel]) -> list[dict[str, Any]]:
    """The panels as JSON-ready rows (markdown text left out)."""
    return [
        {
            "section": panel.section,
            "title": panel.title,
            "kind": panel.kind,
            "job_type": panel.job_type,
            "model": panel.model,
            "protocol": panel.protocol,
            "dataset": panel.dataset,
            "keys": list(panel.keys),
        }
        for panel in panels
    ]


def build_report(panels: Sequence[Panel], project: str, entity: str | None, title: str) -> Any:
    """The ``wandb_workspaces`` report of ``panels`` (not saved): per section, one panel grid per kind of run its
    panels show (a markdown panel joins the section's first grid). Needs the ``dashboard`` extra."""
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        raise ValueError(
            "building the W&B report needs the optional 'dashboard' extra: pip install -e '.[dashboard]' "
            "(wandb-workspaces); offline (WANDB_MODE=offline) the dashboard lists its panels without it"
        ) from None
    where = {"project": project, **({"entity": entity} if entity else {})}
    blocks: list[Any] = [
        wr.P(
            "Built by make dashboard (transfer/dashboard.py): every panel reads keys the project's runs log. "
            "A W&B group per pretraining run holds it and its transfer runs; probe and VOC panels are one "
            "protocol and one dataset each (the runs' Config('protocol') and Config('dataset'))."
        )
    ]
    for section in dict.fromkeys(panel.section for panel in panels):
        members = [panel for panel in panels if panel.section == section]
        grids: dict[tuple[str, str | None, str | None, str | None], list[Any]] = {}
        for panel in members:
            runs = (
                (panel.job_type, panel.model, panel.protocol, panel.dataset)
                if panel.job_type
                else next(iter(grids), (PRETRAIN, None, None, None))
            )
            grids.setdefault(runs, []).append(_wandb_panel(wr, panel))
        blocks.append(wr.H2(section))
        for (job_type, model, protocol, dataset), grid_panels in grids.items():
            filters = run_filters(job_type, model, protocol, dataset)
            runset = wr.Runset(name=f"{job_type} runs", filters=filters, **where)
            blocks.append(wr.PanelGrid(runsets=[runset], panels=grid_panels))
    return wr.Report(title=title, blocks=blocks, **where)


def _wandb_panel(wr: Any, panel: Panel) -> Any:
    if panel.kind == LINE:
        return wr.LinePlot(title=panel.title, x=STEP_KEY, y=list(panel.keys))
    if panel.kind == BAR:
        return wr.BarPlot(
            title=panel.title,
            metrics=list(panel.keys),
            orientation="v",
            groupby="Group" if panel.group_by_run_group else None,
        )
    if panel.kind == MEDIA:
        return wr.MediaBrowser(
            title=panel.title, media_keys=list(panel.keys), mode="gallery", gallery_axis="step"
        )
    if panel.kind == TABLE:
        return wr.WeavePanelSummaryTable(table_name=panel.keys[0])
    return wr.MarkdownPanel(markdown=panel.text)
