"""The end of ``make reproduce``: ``runs/<RUN>/report/report.md``, every number of the campaign beside the paper's
(``transfer.compare`` holds the published constants), the difference, each stage's protocol, the hardware, each
stage's wall time, and the plots beside it (``linear_probe.png``, the low-shot curve, the online evaluation)."""

from __future__ import annotations

import os
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from lit_colorization.store.atomic import write_text
from transfer.compare import IMAGENET, PAPER_PROBES, PAPER_VOC, PLACES, VOC_COLUMNS, compare
from transfer.reproduce.reproduce_config import ReproduceConfig
from transfer.reproduce.stages import RESULTS_FILE, StageSpec, campaign_folder, stage_overrides
from transfer.reproduce.state import PipelineState

REPORT_DIR = "report"
PAPER_METHOD = "colorization"  # the paper's own row of Split-Brain Tables 2 and 4
PAPER_VOC_METHOD = "colorization (rescaled)"
# Which published VOC column a stage's number stands beside (docs/reference.md section 7).
VOC_COLUMN = {"voc-cls-fc6": "cls fc6-8", "voc-cls-all": "cls all", "voc-det": "det", "voc-seg": "seg"}


def paper_value(stage: str, row: dict[str, Any]) -> float | None:
    """The paper's number for what ``row`` measured (None: the paper has none)."""
    if stage in ("probe", "places-probe"):
        table = PAPER_PROBES[PLACES if stage == "places-probe" else IMAGENET][PAPER_METHOD]
        layers = ("conv1", "conv2", "conv3", "conv4", "conv5")
        return table[layers.index(row["layer"])] if row.get("layer") in layers else None
    if stage == "voc-det" and row.get("protocol") != "faster-rcnn-fc67":
        return None  # the paper's detection row is Fast R-CNN's fc6/fc7 head; the MLP head measures another thing
    if stage in VOC_COLUMN:
        return PAPER_VOC[PAPER_VOC_METHOD][VOC_COLUMNS.index(VOC_COLUMN[stage])]
    return None


def measured(stage: str, row: dict[str, Any]) -> tuple[str, float] | None:
    """(what, value in %) of one results row."""
    if stage in ("probe", "places-probe"):
        return f"{row['layer']} top-1", float(row["top1"])
    if stage == "voc-seg":
        return "mIoU", float(row["miou"])
    if stage == "voc-svm-low-shot":
        return f"mAP k={row['k']} (+- {row['map_std']:.2f})", float(row["map"])
    if stage == "voc-det":
        return f"mAP@0.5, {row.get('protocol', row.get('detector', '?'))} on {row.get('layer', '?')}", float(
            row["map"]
        )
    if row.get("protocol") == "svm":
        return f"mAP, SVMs on {row.get('layer', '?')}", float(row["map"])
    return f"mAP, fine-tuned from {row.get('train_from', '?')}", float(row["map"])


def comparison_lines(specs: list[StageSpec], state: PipelineState) -> list[str]:
    lines = ["| stage | number | this run (%) | paper (%) | difference |", "|---|---|---:|---:|---:|"]
    for spec in specs:
        record = state.stages.get(spec.name)
        for row in record.rows if record else []:
            what, value = measured(spec.name, row)
            paper = paper_value(spec.name, row)
            beside = ("-", "-") if paper is None else (f"{paper:.1f}", f"{value - paper:+.1f}")
            lines.append(f"| {spec.name} | {what} | {value:.2f} | {beside[0]} | {beside[1]} |")
    return lines


def hardware_line(config: ReproduceConfig) -> str:
    if torch.cuda.is_available():
        devices = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    else:
        devices = "no GPU"
    return (
        f"{platform.node()}: {devices}; {os.cpu_count()} CPU cores; Python {platform.python_version()}, torch "
        f"{torch.__version__}; GPUS={config.gpus or 'auto'} per node x NODES={config.nodes}"
    )


def protocol_lines(config: ReproduceConfig, specs: list[StageSpec], state: PipelineState) -> list[str]:
    lines = ["| stage | command | preset | overrides over the preset | status | starts | wall time |"]
    lines.append("|---|---|---|---|---|---:|---:|")
    for spec in specs:
        record = state.stages.get(spec.name)
        if spec.command is None or record is None:
            continue
        # The placement keys (run, runs_dir, ckpt, ...) are the same in every campaign: the protocol is the rest.
        placement = (
            "run=",
            "runs_dir=",
            "ckpt=",
            "results=",
            "logger.",
            "targets.prior_path=",
            "resume=",
            "data.tiny.cache_dir=",
        )
        keys = [key for key in stage_overrides(spec, config) if not key.startswith(placement)]
        lines.append(
            f"| {spec.name} | {spec.summary} | {spec.preset(config) or '(base file)'} | {' '.join(keys)} | "
            f"{record.status} | {record.starts} | {_duration(record.wall_seconds)} |"
        )
    return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def copy_plots(root: Path, report_dir: Path) -> list[str]:
    """The stages' own plots copied beside the report; their names."""
    copied = []
    for plot in [
        *sorted(root.glob("voc-cls-svm-low-shot/low_shot_*.png")),
        *root.glob("pretrain/*/online_eval.png"),
    ]:
        shutil.copyfile(plot, report_dir / plot.name)
        copied.append(plot.name)
    return copied


def write_report(config: ReproduceConfig, specs: list[StageSpec], state: PipelineState) -> Path:
    """Write ``report.md`` and its plots into ``runs/<RUN>/report/``; the folder."""
    root = campaign_folder(config)
    report_dir = root / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    results = root / RESULTS_FILE
    comparison = (
        compare(results, report_dir / "linear_probe.png") if results.is_file() else "(no results rows)"
    )
    plots = (["linear_probe.png"] if (report_dir / "linear_probe.png").is_file() else []) + copy_plots(
        root, report_dir
    )
    total = sum(record.wall_seconds for record in state.stages.values())
    smoke = (
        "\n**SCALE=smoke**: every stage shrunk to seconds on a narrow network; the numbers test the pipeline, not "
        "the paper.\n"
        if config.scale == "smoke"
        else ""
    )
    lines = [
        f"# Reproduction {config.run}: {config.model}, {config.scale} scale",
        "",
        f"Written {datetime.now(timezone.utc).isoformat(timespec='seconds')} by `make reproduce` "
        f"(runs/{config.run}/pipeline.json holds each stage's state, config hash and rows).",
        smoke,
        "## Every number beside the paper's",
        "",
        "Paper: the colorization rows of Split-Brain Tables 2 (ImageNet and Places205 linear probes, zhang16) and 4 "
        "(Pascal VOC, rescaled trunk); docs/reference.md section 7. '-': the paper has no such number.",
        "",
        *comparison_lines(specs, state),
        "",
        "## Protocol and wall time per stage",
        "",
        f"Data: ImageNet {config.data or '(embedded photos)'}; VOC {config.voc or '(generated VOC)'}; "
        f"Places205 {config.places or '(not run)'}.",
        "",
        *protocol_lines(config, specs, state),
        "",
        f"Total wall time: {_duration(total)}.",
        "",
        "## Hardware",
        "",
        hardware_line(config),
        "",
        "## Plots",
        "",
        *[f"![{name}]({name})" for name in plots],
        "",
        "## make compare on this campaign's rows",
        "",
        "```",
        comparison.rstrip(),
        "```",
        "",
    ]
    write_text(report_dir / "report.md", "\n".join(lines))
    return report_dir
