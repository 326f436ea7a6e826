"""Colorization quality, the paper's Table 1 (``python -m lit_colorization.cli.eval_color``), one job per module:

- ``config``: the eval-color config schema (configs/eval_color.yaml), its merging and checks, the device.
- ``validation_set``: which images (the validation split, a subset file) and batches of them.
- ``checkpoints``: the checkpoints under evaluation (labels, rebalancing weights, temperatures, decoding).
- ``classifier``: the fixed ImageNet classifier behind semantic interpretability.
- ``scoring``: per-image metrics of a batch and their exact set-level summary.
- ``study_folder``: the real/colorized pairs for ``make turing-test``.
- ``run``: the streamed data pass over the validation set for every method and temperature.
- ``rows``: the results rows; ``tables``: the Markdown text; ``figures``: example grids and the sweep plot.
- ``report``: the report folder, the results store and the logger.
- ``pipeline``: all of it from a config.
"""

__all__ = [
    "checkpoints",
    "classifier",
    "eval_config",
    "figures",
    "pipeline",
    "report",
    "rows",
    "run",
    "scoring",
    "study_folder",
    "tables",
    "validation_set",
]
