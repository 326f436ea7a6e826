"""Colorization pretraining: ``python -m lit_colorization.cli.pretrain [--preset NAME] key=value ...``.

What a run writes and how it resumes: ``lit_colorization.train.pretraining``.
"""

from __future__ import annotations

from lit_colorization.cli.common import run_preset_command
from lit_colorization.train.pretrain_config import PRETRAIN
from lit_colorization.train.pretraining import pretrain


def main(argv: list[str] | None = None) -> None:
    run_preset_command(
        "Colorization pretraining",
        "configs/presets/pretrain/<name>.yaml",
        lambda preset, overrides: pretrain(PRETRAIN.load(preset, overrides)),
        argv,
        default_preset="sample",
    )


if __name__ == "__main__":
    main()
