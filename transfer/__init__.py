"""What the frozen features are worth: linear probes, Pascal VOC transfer, the comparison with the papers."""

__all__ = ["compare", "dashboard", "demo", "runs", "transfer_config", "trunk", "cli", "probe", "voc"]
