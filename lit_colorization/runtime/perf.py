"""Throughput settings: the precision, memory format, compilation and optimizer a run uses on its device.

The config asks (``trainer.precision``, ``channels_last``, ``compile``, ``tf32``; ``optim.fused``) and
``resolve`` answers for the device the run will use. Off CUDA, mixed precision falls back to ``32-true`` and
compile is off, said once per process, and Adam is fused only when asked for: CPU runs are tests, demos and
small jobs, where bf16 autocast and inductor cost more than they give and fp32 keeps results comparable to the
references.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lit_colorization.logs import say_once

AUTO = "auto"
FULL_PRECISION = "32-true"
PRECISIONS = (FULL_PRECISION, "bf16-mixed", "16-mixed", AUTO)
AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
ACCELERATORS = ("auto", "gpu", "cuda", "cpu", "mps")


@dataclass(frozen=True)
class PerfSettings:
    """What a run actually uses; ``precision`` is a Lightning precision string."""

    device: str  # "cuda", "cpu" or "mps"
    precision: str
    channels_last: bool
    compile: bool
    fused_adam: bool
    tf32: bool

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype of a mixed precision, None for full precision."""
        return AUTOCAST_DTYPES.get(self.precision)


def device_type(accelerator: str) -> str:
    """The device type Lightning will pick for ``trainer.accelerator``."""
    if accelerator not in ACCELERATORS:
        raise ValueError(
            f"config key 'trainer.accelerator': expected one of {ACCELERATORS}, got {accelerator!r}"
        )
    if accelerator == "cpu":
        return "cpu"
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    if accelerator in ("auto", "gpu", "mps") and torch.backends.mps.is_available():
        return "mps"
    if accelerator == "auto":
        return "cpu"
    raise ValueError(
        f"config key 'trainer.accelerator': {accelerator!r} asked for, but no such device is available"
    )


def resolve(
    device: str,
    precision: str = FULL_PRECISION,
    channels_last: bool = False,
    compile: bool = False,
    fused: bool | None = None,
    tf32: bool = True,
) -> PerfSettings:
    """The settings for ``device``; ``precision="auto"`` is bf16-mixed on CUDA with bf16, else 32-true.

    ``fused=None`` means fused Adam on CUDA (one kernel per step for all parameters) and the default elsewhere.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"config key 'trainer.precision': expected one of {PRECISIONS}, got {precision!r}")
    on_cuda = device == "cuda"
    if precision == AUTO:
        precision = "bf16-mixed" if on_cuda and torch.cuda.is_bf16_supported() else FULL_PRECISION
    if not on_cuda:
        asked = {f"precision {precision}": precision != FULL_PRECISION, "compile": compile}
        dropped = [name for name, wanted in asked.items() if wanted]
        if dropped:
            say_once(f"on {device}: {', '.join(dropped)} dropped; running fp32 (32-true) without compile")
        precision, compile = FULL_PRECISION, False
    return PerfSettings(
        device=device,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        # Fused Adam also runs on a CPU (torch >= 2.4), so an explicit request is kept there.
        fused_adam=on_cuda if fused is None else fused,
        tf32=tf32 and on_cuda,
    )


def settings_for(trainer: Any, optim: Any) -> PerfSettings:
    """``resolve`` for a pretraining config's ``trainer`` and ``optim`` sections."""
    return resolve(
        device_type(trainer.accelerator),
        precision=trainer.precision,
        channels_last=trainer.channels_last,
        compile=trainer.compile,
        fused=optim.fused,
        tf32=trainer.tf32,
    )


def apply_to_network(network: nn.Module, settings: PerfSettings) -> nn.Module:
    """channels_last parameters and ``torch.compile``, both in place, so state-dict keys stay unprefixed."""
    if settings.channels_last:
        network.to(memory_format=torch.channels_last)
    if settings.compile:
        network.compile()
    return network


def enable_tf32(settings: PerfSettings) -> None:
    """TF32 for fp32 matmuls and convolutions on CUDA (process-wide): what remains fp32 under autocast."""
    if settings.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def adam(
    parameters: Iterable[nn.Parameter],
    lr: float,
    betas: tuple[float, float],
    weight_decay: float,
    settings: PerfSettings,
) -> torch.optim.Adam:
    """Adam, fused where ``settings`` says (the default multi-tensor implementation otherwise)."""
    return torch.optim.Adam(
        parameters, lr=lr, betas=betas, weight_decay=weight_decay, fused=settings.fused_adam or None
    )
