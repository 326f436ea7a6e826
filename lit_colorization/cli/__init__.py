"""One module per ``python -m`` command of lit_colorization; each parses, loads its config and calls one library function."""

__all__ = ["colorize", "common", "eval_color", "pretrain", "priors", "shards"]
