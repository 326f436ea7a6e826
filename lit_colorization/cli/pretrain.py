"""Colorization pretraining: ``python -m lit_colorization.cli.pretrain [--preset NAME] key=value ...``.

What a run writes and how it resumes: ``lit_colorization.train.pretraining``.
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.callbacks import Callback

from lit_colorization.cli.common import run_preset_command
from lit_colorization.train.pretrain_config import PRETRAIN
from lit_colorization.train.pretraining import pretrain


def main(argv: list[str] | None = None, extra_callbacks: Sequence[Callback] = ()) -> None:
    """``extra_callbacks`` join the Trainer's own (what a script wrapping this command adds, e.g. to record)."""
    run_preset_command(
        "Colorization pretraining",
        "configs/presets/pretrain/<name>.yaml",
        lambda preset, overrides: pretrain(PRETRAIN.load(preset, overrides), extra_callbacks),
        argv,
        default_preset="sample",
    )


if __name__ == "__main__":
    main()
