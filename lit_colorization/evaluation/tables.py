"""The text of the report: Markdown tables of the rows, and table.md around them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lit_colorization.evaluation.checkpoints import EvaluatedCheckpoint
from lit_colorization.evaluation.rows import GROUND_TRUTH

# Table header -> row key.
MAIN_COLUMNS = {
    "method": "method",
    "T": "temperature",
    "AuC %": "auc",
    "AuC rebal %": "auc_rebal",
    "PSNR dB": "psnr",
    "SSIM": "ssim",
    "colourfulness": "colorfulness",
    "gap": "colorfulness_gap",
    "top-1 %": "top1",
}
SWEEP_COLUMNS = {header: key for header, key in MAIN_COLUMNS.items() if key not in ("psnr", "ssim", "top1")}
DIGITS = {"ssim": 4}


def format_value(value: Any, digits: int = 2) -> str:
    """A table cell: fixed-point for numbers, 'n/a' for None."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-Markdown table with columns padded to their widest cell (readable as plain text too)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True))
            + " |"
        )

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)]) + "\n"


def rows_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> str:
    """``rows`` as a Markdown table with ``columns`` (header -> row key)."""

    def cell(row: Mapping[str, Any], key: str) -> str:
        # The ground truth's PSNR is stored as None (JSON has no infinity); the table says what it is.
        if key == "psnr" and row["method"] == GROUND_TRUTH:
            return "inf"
        return format_value(row[key], DIGITS.get(key, 2))

    return markdown_table(list(columns), [[cell(row, key) for key in columns.values()] for row in rows])


def semantic_note(basis: str | None, classifier_name: str) -> str:
    """What the top-1 column means for ``basis`` (``scoring.semantic_basis``), or why it is empty."""
    if basis is None:
        return (
            "skipped: no classifier weights given (--classifier-weights PATH, a local torchvision "
            f"{classifier_name} state dict; nothing is ever downloaded)."
        )
    if basis == "imagenet-top1":
        return f"top-1 of {classifier_name} against the ImageNet labels of the class folders."
    return (
        f"the data set's classes are not ImageNet's, so top-1 is the agreement of {classifier_name}'s "
        "prediction on each image with its prediction on the ground truth (ground truth: 100 by definition)."
    )


def report_text(
    rows: Sequence[dict[str, Any]],
    sweep_rows: Sequence[dict[str, Any]],
    checkpoints: Sequence[EvaluatedCheckpoint],
    skipped: int,
    semantic: str,
) -> str:
    """table.md: the main table, how each number is computed, the sweep table, what the grids show."""
    first_row = rows[0]
    lines = [
        "# Colorization quality (Table 1 of Zhang, Isola, Efros 2016)",
        "",
        f"Dataset: {first_row['dataset']}: {first_row['n_images']} images, {first_row['n_color_images']} with "
        f"colour (AuC counts those){f'; {skipped} unreadable skipped' if skipped else ''}.",
        "",
        rows_table(rows, MAIN_COLUMNS),
        "AuC: area under the curve of the fraction of pixels within an ab distance t, t = 0..150 (percent). "
        "PSNR / SSIM: RGB in [0, 1] against the ground truth (PSNR capped at 100 dB per image). "
        "Colourfulness: Hasler-Suesstrunk; gap = method minus ground truth.",
    ]
    for checkpoint in checkpoints:
        if checkpoint.targets is None:
            lines.append(f"Rebalanced AuC of {checkpoint.label}: n/a (its checkpoint stores no prior).")
        else:
            lines.append(
                f"Rebalanced AuC of {checkpoint.label}: each pixel weighted by rebalance_weights(prior, "
                f"lam={checkpoint.lam}) of its true nearest bin, prior from {checkpoint.path}."
            )
    if checkpoints[0].targets is not None:
        lines.append(f"Gray and ground-truth rows use the prior of {checkpoints[0].label}.")
    lines += [f"Semantic interpretability: {semantic}", ""]
    if sweep_rows:
        lines += ["## Temperature sweep (annealed mean)", "", rows_table(sweep_rows, SWEEP_COLUMNS)]
    labels = " | ".join(checkpoint.label for checkpoint in checkpoints)
    lines.append(
        f"Example grids (examples_*.png), ranked by {checkpoints[0].label}'s per-image AuC: "
        f"gray | {labels} | ground truth."
    )
    return "\n".join(lines) + "\n"
