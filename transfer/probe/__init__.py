"""Linear probes on frozen features: the protocols (zhang16, goyal19), the LightningModule and ``probe()``."""

__all__ = ["linear_probe", "module", "probe_config", "protocols"]
