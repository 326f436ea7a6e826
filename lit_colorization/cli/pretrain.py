"""Colorization pretraining: ``python -m lit_colorization.cli.pretrain [--preset NAME] key=value ...``.

What a run writes and how it resumes: ``lit_colorization.pretrain.pretraining``.
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.callbacks import Callback

from lit_colorization.cli.common import run_preset_command
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.pretraining import pretrain


def main(argv: list[str] | None = None, extra_callbacks: Sequence[Callback] = ()) -> None:
    """``extra_callbacks`` join the Trainer's own (what a script wrapping this command adds, e.g. to record)."""
    run_preset_command(
        PRETRAIN,
        lambda config: pretrain(config, extra_callbacks),
        argv,
        default_preset="sample",
        description="Colorization pretraining",
    )


if __name__ == "__main__":
    main()
