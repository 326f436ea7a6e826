# PYTHON_ARGCOMPLETE_OK  (argcomplete: this command completes its flags and presets on tab)
"""Colorization pretraining: ``python -m lit_colorization.cli.pretrain [--preset NAME] [--config FILE] key=value ...``.

What a run writes and how it resumes: ``lit_colorization.pretrain.pretraining``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lit_colorization.cli.common import CommandLibrary, CommandLine, run_preset_command

if TYPE_CHECKING:
    from lightning.pytorch.callbacks import Callback

COMMAND_LINE = CommandLine(
    module="lit_colorization.cli.pretrain",
    description="Colorization pretraining",
    preset_kind="pretrain",
    schema="lit_colorization.config.schema:PretrainConfig",
    default_preset="sample",
)


def main(argv: list[str] | None = None, extra_callbacks: Sequence[Callback] = ()) -> None:
    """``extra_callbacks`` join the Trainer's own (what a script wrapping this command adds, e.g. to record)."""

    def library() -> CommandLibrary:
        from lit_colorization.pretrain.pretrain_config import PRETRAIN
        from lit_colorization.pretrain.pretraining import pretrain
        from lit_colorization.runtime.scaling import resolve_scale

        return CommandLibrary(
            PRETRAIN, lambda config: pretrain(config, extra_callbacks), lambda c: resolve_scale(c).summary()
        )

    run_preset_command(COMMAND_LINE, library, argv)


if __name__ == "__main__":
    main()
