"""Transfer results beside the paper's numbers (``make compare``; command line: ``transfer.cli.compare``).

Prints one section per task found in the results store. ``linear-probe`` is a table per network (pretraining
runs x layers, top-1 %, best layer marked) with the paper's AlexNet rows (docs/reference.md section 7) beside the
AlexNet runs, and a PNG of top-1 per layer per run. ``voc-cls`` and ``voc-det`` list each run's VOC07 mAP and
``voc-seg`` each run's VOC mIoU, with the paper's AlexNet numbers below; ``voc-svm-low-shot`` is a table of mAP
(mean +- std over the draws) per k for each run and layer. A task without a section of its own is listed row by
row with its numeric fields, so new tasks never break the report; a new section is a function added to
``SECTIONS``.

Every number is read in percent: rows written before the store recorded its units are converted first
(``lit_colorization.store.results.in_current_units``), so old and new rows of a run compare alike.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

from lit_colorization.store.atomic import atomic_open
from lit_colorization.store.results import ResultRow, in_current_units, read_results
from transfer.probe.module import POOLED_SIDE

LINEAR_PROBE = "linear-probe"
PAPER_MODEL = "alexnet"
PAPER_DATASET = "ImageNet (paper)"
PAPER_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
# docs/reference.md section 7, ImageNet linear probe top-1 of AlexNet, conv1..conv5 (all recalled figures).
PAPER_LINEAR_PROBE: dict[str, tuple[float, ...]] = {
    "colorization (recalled)": (12.5, 24.5, 30.4, 31.5, 30.3),
    "Gaussian random (recalled)": (11.6, 17.1, 16.9, 16.3, 14.1),
    "ImageNet labels (recalled)": (19.3, 36.3, 44.2, 48.3, 50.5),
}
BEST_MARK = "*"
# Row fields that describe a run rather than measure it: left out of generic sections.
DESCRIPTIVE_FIELDS = frozenset(
    {"schema", "pretrain_step", "feature_dim", "num_classes", "epochs", "seed", "top5_k"}
)


@dataclass(frozen=True)
class Section:
    title: str
    lines: list[str]
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProbeSeries:
    """Top-1 per layer of one pretraining run (or a paper row) probed on one dataset."""

    label: str
    model: str
    dataset: str
    top1: dict[str, float]
    paper: bool = False

    @property
    def best_layer(self) -> str:
        return max(self.top1, key=lambda layer: self.top1[layer])


def paper_series() -> list[ProbeSeries]:
    return [
        ProbeSeries(
            f"paper: {name}", PAPER_MODEL, PAPER_DATASET, dict(zip(PAPER_LAYERS, values, strict=True)), True
        )
        for name, values in PAPER_LINEAR_PROBE.items()
    ]


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def probe_series(rows: Sequence[ResultRow]) -> tuple[list[ProbeSeries], list[str]]:
    """Group linear-probe rows by (network, pretraining run, checkpoint, dataset); a later row of a layer wins."""
    grouped: dict[tuple[str, str, str, str], dict[str, float]] = {}
    problems = []
    for row in rows:
        data = row.data
        missing = [key for key in ("model", "layer") if not isinstance(data.get(key), str)]
        missing += [] if _is_number(data.get("top1")) else ["top1"]
        if missing:
            problems.append(
                f"line {row.line}: {LINEAR_PROBE} row without a valid {', '.join(missing)}, skipped"
            )
            continue
        key = (
            data["model"],
            str(data.get("pretrain_run", "?")),
            str(data.get("ckpt", "?")),
            str(data.get("dataset", "?")),
        )
        grouped.setdefault(key, {})[data["layer"]] = float(data["top1"])
    labels = _run_labels(list(grouped))
    series = [ProbeSeries(labels[key], key[0], key[3], top1) for key, top1 in grouped.items()]
    return series, problems


def _run_labels(keys: list[tuple[str, str, str, str]]) -> dict[tuple[str, str, str, str], str]:
    """The pretraining run's name, plus the checkpoint file where one run was probed from several."""
    labels = {}
    for key in keys:
        model, run, ckpt, dataset = key
        twins = [
            other for other in keys if other[:2] == (model, run) and other[3] == dataset and other != key
        ]
        labels[key] = f"{run} ({Path(ckpt).name})" if twins else run
    return labels


def ordered_layers(model: str, series: Sequence[ProbeSeries]) -> list[str]:
    seen = [layer for one in series for layer in one.top1]
    order = list(POOLED_SIDE.get(model, {}))
    known = [layer for layer in order if layer in seen]
    return known + [layer for layer in dict.fromkeys(seen) if layer not in order]


def format_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *body, strict=True)]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in [header, ["-" * width for width in widths], *body]
    ]


def probe_table(model: str, series: Sequence[ProbeSeries]) -> list[str]:
    layers = ordered_layers(model, series)
    body = []
    for one in series:
        best = one.best_layer
        cells = [
            "-" if layer not in one.top1 else f"{one.top1[layer]:.1f}{BEST_MARK if layer == best else ''}"
            for layer in layers
        ]
        body.append([one.label, _short_dataset(one.dataset), *cells, best])
    return format_table(["run", "data", *layers, "best"], body)


def _short_dataset(dataset: str) -> str:
    return Path(dataset).name if "/" in dataset else dataset


def linear_probe_section(rows: Sequence[ResultRow]) -> Section:
    series, problems = probe_series(rows)
    models = sorted({one.model for one in series} | {PAPER_MODEL})
    lines = [f"top-1 accuracy (%) per layer; {BEST_MARK} marks each run's best layer"]
    for model in models:
        model_series = [one for one in series if one.model == model]
        if model == PAPER_MODEL:
            model_series += paper_series()
        lines += ["", f"{model}:", *probe_table(model, model_series)]
    return Section("ImageNet-style linear probes (frozen features)", lines, problems)


def generic_section(task: str, rows: Sequence[ResultRow]) -> Section:
    """Rows of a task without a dedicated section: one line each with the run and its numeric fields."""
    lines = []
    for row in rows:
        data = row.data
        numbers = [
            f"{key}={value:g}"
            for key, value in data.items()
            if _is_number(value) and key not in DESCRIPTIVE_FIELDS
        ]
        lines.append(
            f"{data.get('pretrain_run', '?')} ({data.get('model', '?')}): {' '.join(numbers) or 'no numeric fields'}"
        )
    return Section(f"{task} ({len(rows)} rows)", lines)


VOC_CLASSIFICATION = "voc-cls"
VOC_DETECTION = "voc-det"
# docs/reference.md section 7: VOC07 test mAP (%) of the colorization AlexNet, as (setting, label, value).
PAPER_VOC: dict[str, list[tuple[str, str, float]]] = {
    VOC_CLASSIFICATION: [
        ("finetune from fc6", "paper: colorization, fc6-8 (recalled)", 61.5),
        ("finetune from conv1", "paper: colorization, all layers", 65.9),
    ],
    VOC_DETECTION: [("Fast R-CNN, all layers", "paper: colorization", 46.9)],
}


def voc_setting(data: dict[str, Any]) -> str:
    """What a VOC row measured: the protocol and layer (classification) or the detector's trunk (detection)."""
    if data.get("task") == VOC_DETECTION:
        frozen = ", frozen" if data.get("freeze_backbone") else ""
        return f"{data.get('detector', '?')} on {data.get('layer', '?')}{frozen}"
    if data.get("protocol") == "svm":
        return f"svm on {data.get('layer', '?')}"
    return f"finetune from {data.get('train_from', '?')}"


def voc_section(task: str, rows: Sequence[ResultRow]) -> Section:
    """One line per VOC run (mAP in %) with the paper's AlexNet numbers below."""
    body, problems = [], []
    for row in rows:
        data = row.data
        if not _is_number(data.get("map")):
            problems.append(f"line {row.line}: {task} row without a numeric 'map', skipped")
            continue
        body.append(
            [
                str(data.get("pretrain_run", "?")),
                str(data.get("model", "?")),
                voc_setting(data),
                _short_dataset(str(data.get("dataset", "?"))),
                str(data.get("ap_metric", "?")),
                f"{float(data['map']):.1f}",
            ]
        )
    body += [
        [label, PAPER_MODEL, setting, "VOC07 (paper)", "voc07", f"{value:.1f}"]
        for setting, label, value in PAPER_VOC[task]
    ]
    title = (
        "Pascal VOC07 classification" if task == VOC_CLASSIFICATION else "Pascal VOC07 detection (IoU 0.5)"
    )
    lines = ["mAP (%) on VOC07 test", *format_table(["run", "model", "setting", "data", "AP", "mAP"], body)]
    return Section(title, lines, problems)


VOC_SEGMENTATION = "voc-seg"
# docs/reference.md section 7 (Split-Brain Table 4): VOC2012 segmentation mIoU (%) with an FCN, AlexNet trunks.
PAPER_VOC_SEGMENTATION = [
    ("paper: colorization (rescaled)", 35.6),
    ("paper: Gaussian random", 19.8),
    ("paper: ImageNet labels", 48.0),
]


def voc_segmentation_section(rows: Sequence[ResultRow]) -> Section:
    """One line per VOC segmentation run (mIoU in %) with the paper's AlexNet FCN numbers below."""
    body, problems = [], []
    for row in rows:
        data = row.data
        if not _is_number(data.get("miou")):
            problems.append(f"line {row.line}: {VOC_SEGMENTATION} row without a numeric 'miou', skipped")
            continue
        setting = f"fcn on {data.get('layer', '?')}, from {data.get('train_from', '?')}"
        body.append(
            [
                str(data.get("pretrain_run", "?")),
                str(data.get("model", "?")),
                setting,
                _short_dataset(str(data.get("dataset", "?"))),
                f"{float(data['miou']):.1f}",
            ]
        )
    body += [
        [label, PAPER_MODEL, "FCN", "VOC12 val (paper)", f"{value:.1f}"]
        for label, value in PAPER_VOC_SEGMENTATION
    ]
    lines = [
        "mIoU (%) over background and the classes, void pixels unscored",
        *format_table(["run", "model", "setting", "data", "mIoU"], body),
    ]
    return Section("Pascal VOC segmentation", lines, problems)


VOC_LOW_SHOT = "voc-svm-low-shot"
SHORT_MARK = "!"


def voc_low_shot_section(rows: Sequence[ResultRow]) -> Section:
    """One line per (run, layer): mAP (%) mean +- std over the draws at each k; ``SHORT_MARK`` where some class
    had fewer than k positives or (classes - 1) x k negatives (the row is not ``complete``)."""
    series: dict[tuple[str, str, str, str], dict[int, str]] = {}
    problems = []
    for row in rows:
        data = row.data
        if not (
            isinstance(data.get("k"), int) and _is_number(data.get("map")) and _is_number(data.get("map_std"))
        ):
            problems.append(
                f"line {row.line}: {VOC_LOW_SHOT} row without an integer 'k' and numeric 'map', 'map_std', skipped"
            )
            continue
        key = (
            str(data.get("pretrain_run", "?")),
            str(data.get("model", "?")),
            str(data.get("layer", "?")),
            _short_dataset(str(data.get("dataset", "?"))),
        )
        short = "" if data.get("complete", True) else SHORT_MARK
        series.setdefault(key, {})[data["k"]] = (
            f"{float(data['map']):.1f}+-{float(data['map_std']):.1f}{short}"
        )
    ks = sorted({k for cells in series.values() for k in cells})
    body = [[*key, *(cells.get(k, "-") for k in ks)] for key, cells in series.items()]
    lines = [
        f"VOC07 test mAP (%) of per-class SVMs trained on k positives per class, mean+-std over the draws; "
        f"{SHORT_MARK}: some class had fewer than k positives or (classes - 1) x k negatives. No paper numbers (docs/reference.md gives none)",
        *format_table(["run", "model", "layer", "data", *(f"k={k}" for k in ks)], body),
    ]
    return Section("Low-shot VOC07 SVMs (Goyal et al. 2019)", lines, problems)


SECTIONS: dict[str, Callable[[Sequence[ResultRow]], Section]] = {
    LINEAR_PROBE: linear_probe_section,
    VOC_CLASSIFICATION: functools.partial(voc_section, VOC_CLASSIFICATION),
    VOC_DETECTION: functools.partial(voc_section, VOC_DETECTION),
    VOC_SEGMENTATION: voc_segmentation_section,
    VOC_LOW_SHOT: voc_low_shot_section,
}


def latest_of_each_run(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """``rows`` less those a later row of the same transfer run (task, ``run``, ``layer``, ``k``) replaces.

    A run is appended to the store before its ``results.json`` marks it finished; one killed in between is
    rerun under its name and appends again, and the rerun's rows are the ones to show. Rows without a
    ``run`` are all kept.
    """
    latest: dict[tuple[str, str, Any, Any], ResultRow] = {}
    for row in rows:
        run = row.data.get("run")
        # A low-shot run writes one row per k of the same layer.
        key = (
            (row.task, run, row.data.get("layer"), row.data.get("k"))
            if isinstance(run, str)
            else (row.task, "", row.line, None)
        )
        latest[key] = row
    return sorted(latest.values(), key=lambda row: row.line)


def build_sections(rows: Sequence[ResultRow]) -> list[Section]:
    """The linear-probe section first (it carries the paper's numbers), then one per other task, by name;
    a run's rows are its latest (``latest_of_each_run``), in percent whenever they were written."""
    by_task: dict[str, list[ResultRow]] = {LINEAR_PROBE: []}
    for row in latest_of_each_run([in_current_units(row) for row in rows]):
        by_task.setdefault(row.task, []).append(row)
    sections = []
    for task in [LINEAR_PROBE, *sorted(task for task in by_task if task != LINEAR_PROBE)]:
        dedicated = SECTIONS.get(task)
        sections.append(dedicated(by_task[task]) if dedicated else generic_section(task, by_task[task]))
    return sections


def render(sections: Sequence[Section]) -> str:
    blocks = []
    for section in sections:
        blocks.append("\n".join([f"== {section.title} ==", *section.lines]))
    return "\n\n".join(blocks) + "\n"


def plot_linear_probe(series: Sequence[ProbeSeries], path: str | Path) -> Path:
    """A PNG with one panel per network: top-1 per layer, one line per run, the paper's rows dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({one.model for one in series})
    figure, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False)
    for axis, model in zip(axes[0], models, strict=True):
        model_series = [one for one in series if one.model == model]
        layers = ordered_layers(model, model_series)
        for one in model_series:
            xs = [index for index, layer in enumerate(layers) if layer in one.top1]
            ys = [one.top1[layers[index]] for index in xs]
            style = {"linestyle": "--", "alpha": 0.7} if one.paper else {"linewidth": 2}
            label = one.label if one.paper else f"{one.label} [{_short_dataset(one.dataset)}]"
            (line,) = axis.plot(xs, ys, marker="o", label=label, **style)
            best = layers.index(one.best_layer)
            axis.plot([best], [one.top1[one.best_layer]], marker="*", markersize=14, color=line.get_color())
        axis.set_xticks(range(len(layers)), layers)
        axis.set_title(f"{model}: linear probe top-1 per layer")
        axis.set_ylabel("top-1 accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as stream:
        figure.savefig(stream, format="png", dpi=110)
    plt.close(figure)
    return path


def compare(results_path: str | Path, plot_path: str | Path) -> str:
    """The report text for ``results_path``; writes the linear-probe plot to ``plot_path``."""
    results = read_results(results_path)
    rows = [in_current_units(row) for row in results.rows]
    sections = build_sections(rows)
    for problem in results.skipped + [p for section in sections for p in section.problems]:
        print(f"warning: {problem}", file=sys.stderr)
    series, _ = probe_series([row for row in rows if row.task == LINEAR_PROBE])
    plot = plot_linear_probe([*series, *paper_series()], plot_path)
    return render(sections) + f"\nplot: {plot}\n"
