"""Colorization quality over a validation set, the shape of the paper's Table 1: ``make eval-color``.

``python -m lit_colorization.cli.eval_color --ckpt A.ckpt [B.ckpt ...] [--data ROOT] [--temperatures T ...]
[--classifier vgg16 --classifier-weights vgg16.pth] [--subset FILE] [key=value ...]``

Rows: ground truth, the gray baseline (ab = 0) and every checkpoint at ``temperature``: AuC plain and rebalanced,
PSNR, SSIM, colourfulness and its gap to the ground truth, and the top-1 of a fixed ImageNet classifier (on
ImageNet class folders; otherwise its agreement with its own prediction on the ground truth). ``sweep`` adds
AuC, rebalanced AuC and colourfulness per temperature for each checkpoint.

Writes ``<out_dir>/<name>/``: table.md (also printed), results.json, per_image.csv, examples_{best,median,worst}.png
(gray | each checkpoint | ground truth, ranked by the first checkpoint's per-image AuC), temperature_sweep.png,
config.yaml, and study/real + study/colorized (the first checkpoint) for ``make turing-test STUDY=<report>/study``;
appends its rows to ``results`` (default results/colorization.jsonl) and logs them (W&B: job_type eval-color).
The work is done by ``lit_colorization.evaluation``; this module only maps the command line to its config.
"""

from __future__ import annotations

import argparse
import json

from lit_colorization.cli.common import print_config, run_cli


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The --flags as config overrides (values JSON-quoted, so any path or number survives)."""
    overrides = []
    if args.ckpt:
        overrides.append(f"ckpts={json.dumps(args.ckpt)}")
    if args.data:
        overrides += ["data.source=folder", f"data.root={json.dumps(args.data)}"]
    if args.temperatures:
        overrides.append(f"sweep={json.dumps(args.temperatures)}")
    for key in ("classifier", "classifier_weights", "subset", "name"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    return overrides


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (configs/eval_color.yaml)")
    parser.add_argument(
        "--ckpt", nargs="+", help="pretraining checkpoint(s); the first drives examples and study"
    )
    parser.add_argument(
        "--data", help="image folder root holding <data.val_split>/ (default: the run's own data)"
    )
    parser.add_argument(
        "--temperatures", nargs="+", type=float, help="temperature sweep, e.g. 0.01 0.2 0.38 0.7 1.0"
    )
    parser.add_argument("--classifier", help="torchvision classifier name (vgg16)")
    parser.add_argument(
        "--classifier-weights", help="its local state-dict file; none: semantic metric skipped"
    )
    parser.add_argument("--subset", help="text file: validation indices or file names, one per line")
    parser.add_argument("--name", help="report folder name under out_dir (default: a timestamp)")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit, writing nothing"
    )
    args = parser.parse_intermixed_args(argv)

    def evaluate() -> None:
        from lit_colorization.evaluation.eval_config import EVAL_COLOR
        from lit_colorization.evaluation.pipeline import evaluate_colorization

        config = EVAL_COLOR.load(None, [*flag_overrides(args), *args.overrides])
        if args.print_config:
            print_config(config)
            return
        evaluate_colorization(config)

    run_cli(evaluate)


if __name__ == "__main__":
    main()
