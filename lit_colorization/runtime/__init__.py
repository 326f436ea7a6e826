"""Lightning plumbing shared by pretraining and transfer: Trainer arguments, throughput settings, guards, preemption, scaling."""

__all__ = ["guards", "perf", "preemption", "scaling", "trainer"]
