"""Transfer results beside the paper's numbers (``make compare``; command line: ``transfer.cli.compare``).

Prints one section per task found in the results store. ``linear-probe`` is a table per network and probe
protocol (pretraining runs x layers, top-1 %, best layer marked) with the published rows of that network and
protocol beside the runs (zhang16: Split-Brain Table 2; goyal19: VISSL's best layer), and a PNG of top-1 per layer
per run. Probe runs on a Places dataset (a ``dataset`` naming "places") get a Places205 section
of their own with the paper's Places205 rows; that section, and those rows, appear only when such runs exist, so
ImageNet runs are never set beside Places numbers. ``voc-cls`` and ``voc-det`` list each run's VOC07 mAP and
``voc-seg`` each run's VOC mIoU with the paper's numbers below, ``voc-svm-low-shot`` a table of mAP (mean +- std
over the draws) per k for each run and layer, and the full Pascal VOC table of the paper (segmentation included, which no task here
runs) closes the report. Every published row names its source and, for probes, its protocol (docs/reference.md
sections 6 and 7). A task without a section of its own is listed row by row with its numeric fields, so new tasks
never break the report; a new section is a function added to ``SECTIONS``.

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
from typing import Any, NamedTuple

from lit_colorization.layer_colours import layer_colour
from lit_colorization.stats import accuracy_interval
from lit_colorization.store.atomic import write_text
from lit_colorization.store.images import save_figure
from lit_colorization.store.results import ResultRow, in_current_units, read_results
from transfer.probe.protocols import GOYAL19, PROBE_LAYERS, PROTOCOLS, ZHANG16

LINEAR_PROBE = "linear-probe"
IMAGENET = "ImageNet"
PLACES = "Places205"
PAPER_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
SPLIT_BRAIN_TABLE_2 = "Split-Brain Tab. 2 (zhang16)"
SPLIT_BRAIN_TABLE_4 = "Split-Brain Tab. 4"
VISSL = "VISSL (goyal19)"
OWN_RUN = "this project"
UNRECORDED = "unrecorded"  # the protocol of rows written before probes named theirs
# docs/reference.md section 7: AlexNet linear-probe top-1 (%), conv1..conv5, under the zhang16 protocol, from the
# Split-Brain paper's Table 2 (its colorization row corrects the colorization paper's own table).
PAPER_PROBES: dict[str, dict[str, tuple[float, ...]]] = {
    IMAGENET: {
        "ImageNet labels": (19.3, 36.3, 44.2, 48.3, 50.5),
        "Gaussian random": (11.6, 17.1, 16.9, 16.3, 14.1),
        "Kraehenbuehl init only": (17.5, 23.0, 24.5, 23.2, 20.6),
        "colorization": (13.1, 24.8, 31.0, 32.6, 31.8),
        "colorization, no rebalancing, 1-hot targets": (12.5, 25.4, 32.4, 33.1, 32.0),
    },
    PLACES: {
        "Places labels": (22.1, 35.1, 40.2, 43.3, 44.6),
        "ImageNet labels": (22.7, 34.8, 38.4, 39.4, 38.7),
        "Gaussian random": (15.7, 20.3, 19.8, 19.1, 17.5),
        "colorization": (16.0, 25.7, 29.6, 30.3, 29.7),
    },
}
# The ECCV 2016 paper's own ImageNet probe table came from the earlier test that average-pooled the features
# (the release's README line 103; docs/reference.md section 11.8): its row stands in a table of that protocol,
# which this project does not run. (recalled: not checked against the paper's table.)
ECCV16_AVGPOOL = "eccv16-avgpool"
ECCV16_TABLE = "ECCV16 Tab. 4 (eccv16-avgpool, recalled)"
PAPER_ECCV16_PROBES: dict[str, tuple[float, ...]] = {"colorization": (12.5, 24.5, 30.4, 31.5, 30.3)}
# docs/reference.md section 7: VISSL's best-layer ImageNet top-1 of Goyal et al. 2019's colorization models
# (ImageNet-1k pretraining, goyal19 protocol); VISSL publishes no per-layer values for them.
PAPER_BEST_LAYER: dict[str, float] = {"alexnet": 30.39, "resnet50": 40.11}
BEST_MARK = "*"
# Row fields that describe a run rather than measure it: left out of generic sections.
DESCRIPTIVE_FIELDS = frozenset(
    {"schema", "pretrain_step", "feature_dim", "num_classes", "epochs", "seed", "top5_k", "val_images"}
)
# Below this many validation images a top-1's 95% Wilson interval is about a point or more either side
# (1.96 x sqrt(0.25 / n) x 100 at n = 10,000, the worst case p = 0.5): the tables then show it.
SMALL_VALIDATION = 10_000


@dataclass(frozen=True)
class Section:
    title: str
    lines: list[str]
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProbeSeries:
    """Top-1 per layer of one pretraining run (or a published row) probed on one dataset.

    ``published_best`` is a best-layer number published without its per-layer values (then ``top1`` is empty).
    """

    label: str
    model: str
    dataset: str
    top1: dict[str, float]
    paper: bool = False
    source: str = OWN_RUN
    published_best: float | None = None
    protocol: str = UNRECORDED
    val_images: dict[str, int] = field(default_factory=dict)  # per layer, when the rows recorded it

    def interval(self, layer: str) -> tuple[float, float] | None:
        """The 95% Wilson interval of ``layer``'s top-1 where its validation set was small, else None."""
        n = self.val_images.get(layer)
        if n is None or n >= SMALL_VALIDATION:
            return None
        return accuracy_interval(self.top1[layer], n)

    @property
    def best_layer(self) -> str | None:
        return max(self.top1, key=lambda layer: self.top1[layer]) if self.top1 else None

    @property
    def best_top1(self) -> float | None:
        layer = self.best_layer
        return self.published_best if layer is None else self.top1[layer]


def paper_series(dataset: str = IMAGENET) -> list[ProbeSeries]:
    """The published probe rows on ``dataset`` (``IMAGENET`` or ``PLACES``)."""
    series = [
        ProbeSeries(
            f"paper: {name}",
            "alexnet",
            dataset,
            dict(zip(PAPER_LAYERS, values, strict=True)),
            paper=True,
            source=SPLIT_BRAIN_TABLE_2,
            protocol=ZHANG16.name,
        )
        for name, values in PAPER_PROBES[dataset].items()
    ]
    if dataset == IMAGENET:
        series += [
            ProbeSeries(
                f"paper: {name}",
                "alexnet",
                IMAGENET,
                dict(zip(PAPER_LAYERS, values, strict=True)),
                paper=True,
                source=ECCV16_TABLE,
                protocol=ECCV16_AVGPOOL,
            )
            for name, values in PAPER_ECCV16_PROBES.items()
        ]
        series += [
            ProbeSeries(
                "VISSL: colorization",
                model,
                IMAGENET,
                {},
                True,
                VISSL,
                published_best=value,
                protocol=GOYAL19.name,
            )
            for model, value in PAPER_BEST_LAYER.items()
        ]
    return series


def is_places(dataset: str) -> bool:
    """Whether a probe row's ``dataset`` (a folder path or a source name) is a Places data set."""
    return "places" in dataset.lower()


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


class ProbeKey(NamedTuple):
    model: str
    run: str
    ckpt: str
    dataset: str
    protocol: str | None  # the probe protocol a row names, if it names one


def probe_series(rows: Sequence[ResultRow]) -> tuple[list[ProbeSeries], list[str]]:
    """Group linear-probe rows by (network, pretraining run, checkpoint, dataset, protocol); a later row of a
    layer wins."""
    grouped: dict[ProbeKey, dict[str, float]] = {}
    val_images: dict[ProbeKey, dict[str, int]] = {}
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
        protocol = data.get("protocol")
        key = ProbeKey(
            data["model"],
            str(data.get("pretrain_run", "?")),
            str(data.get("ckpt", "?")),
            str(data.get("dataset", "?")),
            protocol if isinstance(protocol, str) else None,
        )
        grouped.setdefault(key, {})[data["layer"]] = float(data["top1"])
        n = data.get("val_images")
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            val_images.setdefault(key, {})[data["layer"]] = n
    labels = _run_labels(list(grouped))
    series = [
        ProbeSeries(
            labels[key],
            key.model,
            key.dataset,
            top1,
            source=OWN_RUN if key.protocol is None else f"{OWN_RUN} ({key.protocol})",
            protocol=key.protocol or UNRECORDED,
            val_images=val_images.get(key, {}),
        )
        for key, top1 in grouped.items()
    ]
    return series, problems


def _run_labels(keys: list[ProbeKey]) -> dict[ProbeKey, str]:
    """The pretraining run's name, plus the checkpoint file where one run was probed from several."""
    labels = {}
    for key in keys:
        twins = [other for other in keys if other._replace(ckpt=key.ckpt) == key and other != key]
        labels[key] = f"{key.run} ({Path(key.ckpt).name})" if twins else key.run
    return labels


def ordered_layers(model: str, series: Sequence[ProbeSeries]) -> list[str]:
    seen = [layer for one in series for layer in one.top1]
    order = list(PROBE_LAYERS.get(model, ()))
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
        cells = ["-" if layer not in one.top1 else _cell(one, layer, best) for layer in layers]
        best_top1 = "-" if one.best_top1 is None else f"{one.best_top1:.1f}"
        body.append([one.label, _short_dataset(one.dataset), *cells, best or "-", best_top1, one.source])
    return format_table(["run", "data", *layers, "best", "top-1", "source"], body)


def _cell(one: ProbeSeries, layer: str, best: str | None) -> str:
    text = f"{one.top1[layer]:.1f}{BEST_MARK if layer == best else ''}"
    interval = one.interval(layer)
    return text if interval is None else f"{text} [{interval[0]:.1f}, {interval[1]:.1f}]"


def _short_dataset(dataset: str) -> str:
    return Path(dataset).name if "/" in dataset else dataset


def _probe_tables(series: Sequence[ProbeSeries], paper: Sequence[ProbeSeries]) -> list[str]:
    """One table per (network, protocol) that holds a run of ours: published rows only beside runs of their own
    network and protocol. A published protocol this project does not run (eccv16-avgpool) gets a table of its
    own beside a network of ours, since no run could ever fill it."""
    ours = {(one.model, one.protocol) for one in series}
    networks = {model for model, _ in ours}
    paper_only = {
        (one.model, one.protocol) for one in paper if one.model in networks and one.protocol not in PROTOCOLS
    }
    lines = []
    for model, protocol in sorted(ours | paper_only):
        group = [one for one in [*series, *paper] if (one.model, one.protocol) == (model, protocol)]
        lines += ["", f"{model}, protocol {protocol}:", *probe_table(model, group)]
    return lines


PROBE_LEGEND = [
    f"top-1 accuracy (%) per layer; {BEST_MARK} marks each row's best layer, 'top-1' is that layer's value",
    "zhang16 and goyal19 are different probe protocols (docs/reference.md section 6): one table each;",
    "eccv16-avgpool: the ECCV16 paper's own probe, average pooling (section 11.8); this project runs zhang16;",
    "<protocol>-like: layers the protocol does not define; unrecorded: rows from before probes named a protocol",
    f"[low, high]: 95% Wilson interval, shown where the validation set had fewer than {SMALL_VALIDATION:,} images",
]
SPLIT_BRAIN = "Split-Brain: Zhang, Isola, Efros, CVPR 2017"
VISSL_MODELS = "VISSL: Goyal et al. 2019's models, ImageNet-1k pretraining"


def linear_probe_section(rows: Sequence[ResultRow]) -> Section:
    """Runs on any data but Places beside the published ImageNet rows (always listed)."""
    series, problems = probe_series(rows)
    others = [one for one in series if not is_places(one.dataset)]
    lines = [*PROBE_LEGEND, f"{SPLIT_BRAIN}; {VISSL_MODELS}", *_probe_tables(others, paper_series(IMAGENET))]
    return Section("ImageNet-style linear probes (frozen features)", lines, problems)


def places_probe_section(rows: Sequence[ResultRow]) -> Section | None:
    """Runs on a Places data set beside the paper's Places205 rows; None when there are no such runs."""
    series, _ = probe_series(rows)
    places = [one for one in series if is_places(one.dataset)]
    if not places:
        return None
    lines = [*PROBE_LEGEND, SPLIT_BRAIN, *_probe_tables(places, paper_series(PLACES))]
    return Section("Places205 linear probes (frozen features)", lines)


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
VOC_SEGMENTATION = "voc-seg"
VOC_COLUMNS = ("cls fc6-8", "cls all", "det", "seg")
# docs/reference.md section 7, Split-Brain Table 4 (AlexNet): VOC2007 classification mAP fine-tuning fc6-8 and all
# layers, VOC2007 Fast R-CNN detection mAP, FCN-AlexNet segmentation mIoU (seg11valid, section 11.6) (%); None
# where the paper has none.
PAPER_VOC: dict[str, tuple[float | None, ...]] = {
    "ImageNet labels": (78.9, 79.9, 56.8, 48.0),
    "Gaussian random": (None, 53.3, 43.4, 19.8),
    "colorization (rescaled)": (61.5, 65.9, 46.9, 35.6),
}
# Which of PAPER_VOC's columns stand beside a task's runs, and the setting each column was measured in.
# Classification: the kraehenbuehl16 protocol (docs/reference.md section 11.4), whose rows say "kraehenbuehl16 from
# <layer>"; detection Fast R-CNN (section 11.7); segmentation the release's FCN-AlexNet on VOC2011+SBD, seg11valid
# (section 11.6).
PAPER_VOC_BESIDE: dict[str, tuple[tuple[str, str], ...]] = {
    VOC_CLASSIFICATION: (("cls fc6-8", "kraehenbuehl16 from fc6"), ("cls all", "kraehenbuehl16 from conv1")),
    VOC_DETECTION: (("det", "Fast R-CNN, all layers"),),
    VOC_SEGMENTATION: (("seg", "FCN-AlexNet (release), VOC11+SBD -> seg11valid"),),
}
# The AP each paper row was scored with: philkr/voc-classification's scikit-learn area AP; Fast R-CNN's VOC07 test
# the devkit's 11-point AP.
PAPER_VOC_AP_METRIC = {VOC_CLASSIFICATION: "area", VOC_DETECTION: "11pt"}


def paper_voc_rows(task: str) -> list[tuple[str, str, float]]:
    """(setting, label, value) of the paper's numbers for ``task``."""
    rows = []
    for column, setting in PAPER_VOC_BESIDE[task]:
        for method, values in PAPER_VOC.items():
            value = values[VOC_COLUMNS.index(column)]
            if value is not None:
                rows.append((setting, f"paper: {method}", value))
    return rows


def voc_setting(data: dict[str, Any]) -> str:
    """What a VOC row measured: the protocol and layer (classification) or the detector's trunk (detection)."""
    if data.get("task") == VOC_DETECTION:
        frozen = ", frozen" if data.get("freeze_backbone") else ""
        # The protocol names the box head (faster-rcnn-fc67 or -mlp); rows written before it existed name the detector.
        return f"{data.get('protocol') or data.get('detector', '?')} on {data.get('layer', '?')}{frozen}"
    if data.get("protocol") == "svm":
        return f"svm on {data.get('layer', '?')}"
    # Rows written before the kraehenbuehl16 protocol existed have protocol "finetune" (or none).
    return f"{data.get('protocol') or 'finetune'} from {data.get('train_from', '?')}"


def seg_setting(data: dict[str, Any]) -> str:
    """What a VOC segmentation row trained: the release's FCN-AlexNet, or this project's FCN head."""
    if data.get("protocol") == "release":  # the paper's protocol (docs/reference.md section 11.6)
        return f"release FCN-AlexNet, crop {data.get('crop_offset', '?')}"
    return f"fcn on {data.get('layer', '?')}, from {data.get('train_from', '?')}"


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
                OWN_RUN,
            ]
        )
    body += [
        [
            label,
            "alexnet",
            setting,
            "VOC07 (paper)",
            PAPER_VOC_AP_METRIC[task],
            f"{value:.1f}",
            SPLIT_BRAIN_TABLE_4,
        ]
        for setting, label, value in paper_voc_rows(task)
    ]
    title = (
        "Pascal VOC07 classification" if task == VOC_CLASSIFICATION else "Pascal VOC07 detection (IoU 0.5)"
    )
    header = ["run", "model", "setting", "data", "AP", "mAP", "source"]
    return Section(title, ["mAP (%) on VOC07 test", *format_table(header, body)], problems)


def paper_voc_section() -> Section:
    """The paper's whole Pascal VOC table, segmentation included."""
    body = [
        [method, *("-" if value is None else f"{value:.1f}" for value in values)]
        for method, values in PAPER_VOC.items()
    ]
    lines = [
        f"AlexNet, {SPLIT_BRAIN_TABLE_4}: VOC2007 classification and detection mAP, segmentation mIoU (%)",
        *format_table(["method", *VOC_COLUMNS], body),
    ]
    return Section("Pascal VOC, the paper's numbers", lines)


def voc_segmentation_section(rows: Sequence[ResultRow]) -> Section:
    """One line per VOC segmentation run (mIoU in %) with the paper's AlexNet FCN numbers below."""
    body, problems = [], []
    for row in rows:
        data = row.data
        if not _is_number(data.get("miou")):
            problems.append(f"line {row.line}: {VOC_SEGMENTATION} row without a numeric 'miou', skipped")
            continue
        body.append(
            [
                str(data.get("pretrain_run", "?")),
                str(data.get("model", "?")),
                seg_setting(data),
                _short_dataset(str(data.get("dataset", "?"))),
                f"{float(data['miou']):.1f}",
            ]
        )
    body += [
        [label, "alexnet", setting, "seg11valid (paper)", f"{value:.1f}"]
        for setting, label, value in paper_voc_rows(VOC_SEGMENTATION)
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
    """The sections that hold a run of ours: the linear probes (with the paper's numbers beside them), the
    Places205 probes, one per other task by name, then the paper's VOC table when there is a VOC run; a run's rows
    are its latest (``latest_of_each_run``), in percent whenever they were written."""
    by_task: dict[str, list[ResultRow]] = {LINEAR_PROBE: []}
    for row in latest_of_each_run([in_current_units(row) for row in rows]):
        by_task.setdefault(row.task, []).append(row)
    own_probes = [one for one in probe_series(by_task[LINEAR_PROBE])[0] if not is_places(one.dataset)]
    sections = [linear_probe_section(by_task[LINEAR_PROBE])] if own_probes else []
    places = places_probe_section(by_task[LINEAR_PROBE])
    sections += [] if places is None else [places]
    for task in sorted(task for task in by_task if task != LINEAR_PROBE):
        dedicated = SECTIONS.get(task)
        sections.append(dedicated(by_task[task]) if dedicated else generic_section(task, by_task[task]))
    has_voc = any(task in PAPER_VOC_BESIDE for task in by_task)
    return [*sections, paper_voc_section()] if has_voc else sections


def render(sections: Sequence[Section]) -> str:
    blocks = []
    for section in sections:
        blocks.append("\n".join([f"== {section.title} ==", *section.lines]))
    return "\n\n".join(blocks) + "\n"


# Runs are told apart by line and marker shape; colour marks the layer (lit_colorization/layer_colours.py).
RUN_LINE_COLOURS = ("black", "0.35", "0.55")
RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
PAPER_LINE_COLOUR = "0.6"
PAPER_DASHES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
PAPER_MARKERS = ("s", "^", "v", "D", "P")


def plot_linear_probe(series: Sequence[ProbeSeries], path: str | Path) -> Path:
    """A PNG with one panel per (network, protocol) that has a run of ours: top-1 per layer, one line per run,
    that protocol's published rows dashed (a published best-layer number dotted across). Each point, its best-layer
    star and the layer's tick are in the layer's colour of every figure (``layer_colour``); runs differ by line
    shade and marker, published rows by dash and hollow marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    panels = sorted({(one.model, one.protocol) for one in series if not one.paper})
    if not panels:  # nothing of ours to draw: the published rows alone
        panels = sorted({(one.model, one.protocol) for one in series})[:1] or [("alexnet", ZHANG16.name)]
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4.2 * rows), squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, (model, protocol) in zip(axes.flat, panels, strict=False):
        panel = [one for one in series if (one.model, one.protocol) == (model, protocol)]
        layers = ordered_layers(model, panel)
        colours = [layer_colour(layer) for layer in layers]
        key = []
        own_index = paper_index = 0
        for one in panel:
            label = f"{one.label} [{_short_dataset(one.dataset)}]"
            if one.best_layer is None:  # a published best-layer number: a level line across the layers
                axis.axhline(one.published_best, color=PAPER_LINE_COLOUR, linestyle=":")
                key.append(
                    Line2D([], [], color=PAPER_LINE_COLOUR, linestyle=":", label=f"{label}, best layer")
                )
                continue
            xs = [index for index, layer in enumerate(layers) if layer in one.top1]
            ys = [one.top1[layers[index]] for index in xs]
            if one.paper:
                line = {
                    "color": PAPER_LINE_COLOUR,
                    "linestyle": PAPER_DASHES[paper_index % len(PAPER_DASHES)],
                }
                marker = {"marker": PAPER_MARKERS[paper_index % len(PAPER_MARKERS)], "facecolor": "white"}
                paper_index += 1
            else:
                line = {"color": RUN_LINE_COLOURS[own_index % len(RUN_LINE_COLOURS)], "linewidth": 2}
                marker = {"marker": RUN_MARKERS[own_index % len(RUN_MARKERS)], "edgecolor": line["color"]}
                own_index += 1
            axis.plot(xs, ys, zorder=2, **line)
            point_colours = [colours[index] for index in xs]
            if one.paper:  # hollow: the layer's colour on the edge
                axis.scatter(xs, ys, s=36, zorder=3, edgecolors=point_colours, linewidths=1.5, **marker)
            else:
                axis.scatter(xs, ys, s=64, zorder=4, c=point_colours, linewidths=1.2, **marker)
            key.append(
                Line2D(
                    [], [], **line, marker=marker["marker"], markerfacecolor="white",
                    markeredgecolor=line["color"], label=label,
                )
            )  # fmt: skip
            shown = [(index, one.interval(layers[index])) for index in xs]
            shown = [(index, interval) for index, interval in shown if interval is not None]
            if shown:  # small validation sets: the 95% Wilson band
                band_xs, band = zip(*shown, strict=True)
                lows, highs = zip(*band, strict=True)
                axis.fill_between(band_xs, lows, highs, color=line["color"], alpha=0.12)
            best = layers.index(one.best_layer)
            axis.scatter(
                [best], [one.top1[one.best_layer]], marker="*", s=260, zorder=5,
                c=[colours[best]], edgecolors="black", linewidths=0.8,
            )  # fmt: skip
        axis.set_xticks(range(len(layers)), layers)
        for tick, colour in zip(axis.get_xticklabels(), colours, strict=True):
            tick.set_color(colour)
            tick.set_fontweight("bold")
        axis.set_title(f"{model}, protocol {protocol}: top-1 per layer")
        axis.set_ylabel("top-1 accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend(handles=key, fontsize=7)
    figure.tight_layout()
    return save_figure(figure, path)


class ComparisonRow(NamedTuple):
    """One number of ours beside the paper's: keyed by (task, network, protocol, dataset) and the setting."""

    task: str
    network: str
    protocol: str
    dataset: str
    setting: str  # the layer (probes) or what the VOC run trained
    run: str
    ours: float
    paper: float | None
    paper_source: str

    @property
    def difference(self) -> float | None:
        return None if self.paper is None else self.ours - self.paper


def _paper_probe(one: ProbeSeries, layer: str) -> tuple[float | None, str]:
    """The paper's colorization top-1 for ``one``'s network, protocol, dataset and ``layer``, with its source."""
    if one.protocol == ZHANG16.name and one.model == "alexnet" and layer in PAPER_LAYERS:
        values = PAPER_PROBES[PLACES if is_places(one.dataset) else IMAGENET]["colorization"]
        return values[PAPER_LAYERS.index(layer)], SPLIT_BRAIN_TABLE_2
    return None, ""


def _paper_voc(task: str, data: dict[str, Any]) -> tuple[float | None, str]:
    """The paper's colorization (rescaled) number for an AlexNet VOC run of the protocol that produced it (the
    kraehenbuehl16 fine-tunes from fc6 and conv1, faster-rcnn-fc67, the release's segmentation), else None."""
    if data.get("model") != "alexnet" or task not in PAPER_VOC_BESIDE:
        return None, ""
    protocol = data.get("protocol")
    column = None
    if task == VOC_CLASSIFICATION and protocol == "kraehenbuehl16":
        column = {"fc6": "cls fc6-8", "conv1": "cls all"}.get(data.get("train_from"))
    elif task == VOC_DETECTION and protocol == "faster-rcnn-fc67" and not data.get("freeze_backbone"):
        column = "det"
    elif task == VOC_SEGMENTATION and protocol == "release":
        column = "seg"
    if column is None:
        return None, ""
    return PAPER_VOC["colorization (rescaled)"][VOC_COLUMNS.index(column)], SPLIT_BRAIN_TABLE_4


def comparison_rows(rows: Sequence[ResultRow]) -> list[ComparisonRow]:
    """Every number of ours with the paper's number of the same (network, protocol, dataset, task) where it has one."""
    latest = latest_of_each_run(rows)
    table = []
    series, _ = probe_series([row for row in latest if row.task == LINEAR_PROBE])
    for one in series:
        for layer in ordered_layers(one.model, [one]):
            paper, source = _paper_probe(one, layer)
            dataset = PLACES if is_places(one.dataset) else _short_dataset(one.dataset)
            table.append(
                ComparisonRow(
                    LINEAR_PROBE,
                    one.model,
                    one.protocol,
                    dataset,
                    layer,
                    one.label,
                    one.top1[layer],
                    paper,
                    source,
                )
            )
    for row in latest:
        data = row.data
        measure = "miou" if row.task == VOC_SEGMENTATION else "map"
        if row.task not in PAPER_VOC_BESIDE or not _is_number(data.get(measure)):
            continue
        paper, source = _paper_voc(row.task, data)
        setting = voc_setting(data) if row.task != VOC_SEGMENTATION else seg_setting(data)
        table.append(
            ComparisonRow(
                row.task,
                str(data.get("model", "?")),
                str(data.get("protocol", "finetune" if row.task == VOC_CLASSIFICATION else "?")),
                _short_dataset(str(data.get("dataset", "?"))),
                setting,
                str(data.get("pretrain_run", "?")),
                float(data[measure]),
                paper,
                source,
            )
        )
    return table


COMPARISON_COLUMNS = (
    "task",
    "network",
    "protocol",
    "dataset",
    "setting",
    "run",
    "ours",
    "paper",
    "difference",
    "paper_source",
)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def comparison_markdown(table: Sequence[ComparisonRow], problems: Sequence[str]) -> str:
    """``results/compare.md``: one section per (task, network, protocol, dataset) with a run of ours."""
    lines = [
        "# Our transfer numbers beside the paper's",
        "",
        "Percent. `paper`: the colorization row of the same network, protocol, dataset and task "
        "(docs/reference.md section 7); empty where the paper has none. `difference` = ours - paper.",
    ]
    keys = sorted({(one.task, one.network, one.protocol, one.dataset) for one in table})
    for task, network, protocol, dataset in keys:
        lines += ["", f"## {task}: {network}, protocol {protocol}, {dataset}", ""]
        lines += [
            "| run | setting | ours | paper | difference | paper source |",
            "|---|---|---:|---:|---:|---|",
        ]
        for one in table:
            if (one.task, one.network, one.protocol, one.dataset) == (task, network, protocol, dataset):
                difference = "" if one.difference is None else f"{one.difference:+.1f}"
                lines.append(
                    f"| {one.run} | {one.setting} | {one.ours:.1f} | {_number(one.paper)} | {difference} | "
                    f"{one.paper_source} |"
                )
    if not keys:
        lines += ["", "No run of ours in the results store yet."]
    if problems:
        lines += ["", "## Rows refused", "", *(f"- {problem}" for problem in problems)]
    return "\n".join(lines) + "\n"


def comparison_csv(table: Sequence[ComparisonRow]) -> str:
    """``results/compare.csv``: the same rows, one a line, with the paper's number and the difference."""
    import csv
    import io

    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(COMPARISON_COLUMNS)
    for one in table:
        writer.writerow(
            [*one[:6], f"{one.ours:.2f}", _number(one.paper), _number(one.difference), one.paper_source]
        )
    return stream.getvalue()


def compare(results_path: str | Path, plot_path: str | Path) -> str:
    """The report text for ``results_path``; writes the linear-probe plot to ``plot_path`` and, beside it,
    ``compare.md`` and ``compare.csv`` (ours, the paper's number and the difference per row)."""
    results = read_results(results_path)  # rows out of range are skipped there, each named in results.skipped
    rows = [in_current_units(row) for row in results.rows]
    sections = build_sections(rows)
    problems = [*results.skipped, *(p for section in sections for p in section.problems)]
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    series, _ = probe_series([row for row in latest_of_each_run(rows) if row.task == LINEAR_PROBE])
    paper = paper_series(IMAGENET)
    if any(is_places(one.dataset) for one in series):
        paper += paper_series(PLACES)
    plot = plot_linear_probe([*series, *paper], plot_path)
    table = comparison_rows(rows)
    markdown, spreadsheet = Path(plot).with_name("compare.md"), Path(plot).with_name("compare.csv")
    write_text(markdown, comparison_markdown(table, problems))
    write_text(spreadsheet, comparison_csv(table))
    if not sections:
        sections = [Section("No run of ours", [f"{results_path} holds no transfer row of ours yet"])]
    return render(sections) + f"\nplot: {plot}\ntables: {markdown}, {spreadsheet}\n"
