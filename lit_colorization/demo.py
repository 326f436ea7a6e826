"""``make demo``: the main job end to end on the embedded photos, on the CPU.

Pretrains a small colorizer (the ``sample`` preset as run ``demo``, on the CPU, CSV logs), colorizes the embedded photos at full resolution and writes
``runs/demo/report/``: an image grid (gray | colorized | original) and ``metrics.json``. Running it again resumes
the run from its last checkpoint instead of starting over.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lit_colorization.atomic import write_text
from lit_colorization.cli import load_pretrain_config, run_cli
from lit_colorization.colorize import colorize_rgb, load_colorizer
from lit_colorization.data.embedded import load_embedded_photos
from lit_colorization.pretrain import pretrain
from lit_colorization.visualize import save_png, to_uint8_image

REPORT_WIDTH = 256  # photos are shown at this width in the report grid


def _final_metrics(run_dir: Path) -> dict[str, float]:
    """The last logged value of each validation metric, from the run's CSV logs."""
    metrics: dict[str, float] = {}
    for csv_file in sorted((run_dir / "csv").glob("version_*/metrics.csv"), key=lambda p: p.stat().st_mtime):
        header, *rows = [line.split(",") for line in csv_file.read_text().splitlines()]
        for row in rows:
            for key, value in zip(header, row, strict=False):
                if key.startswith("val/") and value:
                    metrics[key] = float(value)
    return metrics


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    size = (REPORT_WIDTH, max(1, round(height * REPORT_WIDTH / width)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))


def photo_report(checkpoint: Path, report_dir: Path, temperature: float) -> Path:
    """Colorize every embedded photo; one row each: gray input, colorization, original."""
    colorizer = load_colorizer(checkpoint)
    rows = []
    for photo in load_embedded_photos():
        name, rgb = photo.name, photo.image
        colorized = to_uint8_image(
            colorize_rgb(colorizer, torch.from_numpy(rgb), temperature, input_size=256)
        )
        save_png(colorized, report_dir / "colorized" / f"{name}.png")
        gray = np.repeat(np.asarray(Image.fromarray(rgb).convert("L"))[..., None], 3, axis=2)
        rows.append(np.concatenate([_thumbnail(image) for image in (gray, colorized, rgb)], axis=1))
    return save_png(np.concatenate(rows, axis=0), report_dir / "photos.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="config overrides key=value for the pretraining")
    args = parser.parse_args(argv)

    def run() -> None:
        demo_overrides = ["run=demo", "resume=auto", "trainer.accelerator=cpu", "logger.kind=csv"]
        config = load_pretrain_config("sample", [*demo_overrides, *args.overrides])
        run_dir = pretrain(config)
        report_dir = run_dir / "report"
        grid = photo_report(run_dir / "checkpoints" / "last.ckpt", report_dir, config.targets.temperature)
        metrics = _final_metrics(run_dir)
        write_text(report_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        print(f"\ndemo report: {report_dir}/  (photos: {grid.name}, metrics: metrics.json)")
        for key in ("val/loss", "val/auc", "val/auc_gray", "val/auc_rebal", "val/auc_rebal_gray"):
            if key in metrics:
                print(f"  {key:20s} {metrics[key]:.4f}")

    run_cli(run)


if __name__ == "__main__":
    main()
