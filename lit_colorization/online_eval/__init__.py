"""Transfer quality while pretraining: per-layer online linear probes and kNN, their history and plot."""

__all__ = ["callback", "history", "knn", "probes"]
