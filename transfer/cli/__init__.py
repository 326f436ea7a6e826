"""One module per ``python -m`` command of transfer; each parses, loads its config and calls one library function."""

__all__ = ["compare", "dashboard", "demo", "probe", "voc_cls", "voc_det", "voc_seg"]
