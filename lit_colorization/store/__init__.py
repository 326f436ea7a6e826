"""Everything written to disk: atomic writes, checkpoints, the results store, loggers, the run lock."""

__all__ = ["atomic", "checkpoint", "images", "loggers", "results", "run_lock"]
