"""The main job end to end on the embedded photos, on the CPU (``make demo``, ``python -m transfer.cli.demo``).

1. Pretrains a small colorizer (the ``sample`` preset as run ``demo``, CSV logs).
2. Colorizes the embedded photos at full resolution.
3. Measures the frozen features with per-layer linear probes, the pretrained trunk beside the same network
   freshly initialised (the paper's random baseline), and compares them with the paper's numbers.

Everything lands in ``runs/demo/report/``: ``photos.png`` (gray | colorized | original), ``validation.png`` (the
last validation grid), ``metrics.json``, ``online_eval.png`` (the online probes' and kNN's top-1 per layer over
the pretraining, with 95% Wilson bands: the validation set is a few dozen crops), ``transfer.jsonl``,
``comparison.txt`` and ``linear_probe.png``.
Running it again resumes the run from its last checkpoint and reuses finished probes instead of starting over.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lit_colorization.config.schema import PretrainConfig
from lit_colorization.data.embedded import load_embedded_photos
from lit_colorization.inference.colorizer import colorize_rgb, load_colorizer
from lit_colorization.online_eval.history import HISTORY_FILE, PLOT_FILE, format_table, read_history
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.pretraining import pretrain
from lit_colorization.store.atomic import write_text
from lit_colorization.store.images import save_png
from transfer.compare import compare
from transfer.probe.linear_probe import probe
from transfer.probe.probe_config import PROBE

REPORT_WIDTH = 256  # photos are shown at this width in the report grid
DEMO_OVERRIDES = ["run=demo", "resume=auto", "trainer.accelerator=cpu", "logger.kind=csv"]


def validation_history(run_dir: Path) -> dict[int, dict[str, float]]:
    """Validation metrics by step (step 0: the untrained network), from the run's CSV logs."""
    history: dict[int, dict[str, float]] = {}
    for csv_file in sorted((run_dir / "csv").glob("version_*/metrics.csv"), key=lambda p: p.stat().st_mtime):
        header, *rows = [line.split(",") for line in csv_file.read_text().splitlines()]
        for row in rows:
            values = dict(zip(header, row, strict=False))
            scores = {key: float(value) for key, value in values.items() if key.startswith("val/") and value}
            if scores:
                history.setdefault(int(values["step"]), {}).update(scores)
    return dict(sorted(history.items()))


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    size = (REPORT_WIDTH, max(1, round(height * REPORT_WIDTH / width)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))


def photo_report(checkpoint: Path, report_dir: Path, temperature: float) -> Path:
    """Colorize every embedded photo; one row each: gray input, colorization, original."""
    colorizer = load_colorizer(checkpoint)
    rows = []
    for photo in load_embedded_photos():
        colorized = colorize_rgb(colorizer, torch.from_numpy(photo.image), temperature, input_size=256)
        save_png(colorized, report_dir / "colorized" / f"{photo.name}.png")
        gray = np.repeat(np.asarray(Image.fromarray(photo.image).convert("L"))[..., None], 3, axis=2)
        rows.append(np.concatenate([_thumbnail(image) for image in (gray, colorized, photo.image)], axis=1))
    return save_png(np.concatenate(rows, axis=0), report_dir / "photos.png")


def online_report(run_dir: Path, report_dir: Path) -> list[str]:
    """The pretraining's online evaluation: its plot copied into the report, its points as text (none if off)."""
    if not (run_dir / HISTORY_FILE).is_file():
        return []
    if (run_dir / PLOT_FILE).is_file():
        shutil.copyfile(run_dir / PLOT_FILE, report_dir / PLOT_FILE)
    return format_table(read_history(run_dir / HISTORY_FILE))


def probe_report(config: PretrainConfig, checkpoint: Path, report_dir: Path) -> str:
    """Linear probes of every layer: the pretrained trunk and the same network at random; the comparison text."""
    results = report_dir / "transfer.jsonl"
    width = config.model.kwargs.get("width", 1.0)
    variants = {
        "demo-probe": [f"ckpt={checkpoint}"],
        "demo-probe-random": ["ckpt=random", f"model={config.model.name}", f"model_kwargs.width={width}"],
    }
    for run, overrides in variants.items():
        if (Path(config.runs_dir) / f"probe-{run}" / "results.json").exists():
            continue  # finished by an earlier demo
        common = [f"run={run}", f"runs_dir={config.runs_dir}", f"results={results}", "logger.kind=csv"]
        probe(PROBE.load("sample", [*common, "trainer.accelerator=cpu", *overrides]))
    text = compare(results, report_dir / "linear_probe.png")
    write_text(report_dir / "comparison.txt", text)
    return text


def run_demo(overrides: Sequence[str] = ()) -> Path:
    """Pretrain, colorize, probe and compare on the embedded photos; ``overrides`` go to the pretraining config.

    Returns the report folder.
    """
    config = PRETRAIN.load("sample", [*DEMO_OVERRIDES, *overrides])
    run_dir = pretrain(config)
    report_dir = run_dir / "report"
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    photo_report(checkpoint, report_dir, config.targets.temperature)
    grids = sorted((run_dir / "images").glob("val_step*.png"))
    if grids:
        shutil.copyfile(grids[-1], report_dir / "validation.png")
    online_table = online_report(run_dir, report_dir)
    history = validation_history(run_dir)
    write_text(report_dir / "metrics.json", json.dumps(history, indent=2) + "\n")
    comparison = probe_report(config, checkpoint, report_dir)
    print("\n" + comparison)
    print("colorization, validation crops, by step (step 0: untrained):")
    keys = ("val/loss", "val/auc", "val/auc_gray", "val/auc_rebal", "val/auc_rebal_gray")
    print(f"  {'step':>6s} " + " ".join(f"{key[4:]:>14s}" for key in keys))
    for step, scores in history.items():
        print(f"  {step:>6d} " + " ".join(f"{scores.get(key, float('nan')):>14.4f}" for key in keys))
    if online_table:
        print(
            "\nonline evaluation while pretraining (step 0: the untrained network), top-1 with 95% Wilson interval:"
        )
        print("\n".join(online_table))
    print(f"\ndemo report: {report_dir}/")
    return report_dir
