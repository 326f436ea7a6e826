# PYTHON_ARGCOMPLETE_OK  (argcomplete: this command completes its flags and presets on tab)
"""``python -m lit_colorization.cli.priors [--preset NAME] [--config FILE] [--out PATH] key=value ...``: the ab
prior of a training set, written as a (Q,) ``.npy`` (default ``runs/<run>/prior.npy``)."""

from __future__ import annotations

from lit_colorization.cli.common import CommandLibrary, CommandLine, preset_parser, run_parsed

COMMAND_LINE = CommandLine(
    module="lit_colorization.cli.priors",
    description="Empirical ab prior of a training set (the pretraining config's data)",
    preset_kind="pretrain",
    schema="lit_colorization.config.schema:PretrainConfig",
    default_preset="sample",
)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, load the pretraining config, write the prior."""
    parser = preset_parser(COMMAND_LINE)
    parser.add_argument("--out", help="output .npy (default: runs/<run>/prior.npy)")
    args = parser.parse_args(argv)

    def library() -> CommandLibrary:
        from lit_colorization.pretrain.pretrain_config import PRETRAIN
        from lit_colorization.pretrain.priors import write_prior

        return CommandLibrary(PRETRAIN, lambda config: write_prior(config, args.out))

    run_parsed(args, library)


if __name__ == "__main__":
    main()
