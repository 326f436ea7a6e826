"""The recipe in global terms: how a run's batch, learning rate and schedule follow from the recipe and its devices.

A recipe (``configs/models/<name>.yaml``) describes the paper's single-GPU run: a batch, a learning rate and a schedule.
Here, on any number of processes:

- ``data.batch_size`` is the GLOBAL batch of an optimizer step, split evenly over trainer.devices x
  trainer.num_nodes processes (each loads ``per_device_batch`` images); a split that does not divide is an error.
- ``optim.reference_batch_size`` is the recipe's global batch (null: ``data.batch_size``, a config that is its own
  recipe). ``optim.lr`` and ``optim.milestone_lrs`` are learning rates at that batch; ``optim.lr_scaling`` scales
  them to this run's global batch: ``linear`` (x global / reference), ``sqrt`` (x its square root) or ``none``.
- ``trainer.max_steps`` and ``optim.milestones`` count steps of the reference batch, so that the schedule is one of
  images seen: a run with another global batch trains ``ceil(steps x reference / global)`` steps. Every other step
  count (``val_check_interval``, ``checkpoint_every_n_steps``, ``log_every_n_steps``) counts this run's own steps.

``scale_recipe`` is a pure function of the config and the device count; ``devices_per_node`` counts the devices
as Lightning's Trainer will, without starting any process.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import lightning as L
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator, MPSAccelerator
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import ListConfig

from lit_colorization.config.loading import ConfigError
from lit_colorization.runtime.perf import device_type

LR_SCALINGS = ("none", "linear", "sqrt")
ACCELERATOR_CLASSES = {"cpu": CPUAccelerator, "cuda": CUDAAccelerator, "mps": MPSAccelerator}


@dataclass(frozen=True)
class RunScale:
    """A run's batch, learning rates and schedule, with the recipe's they come from."""

    devices: int  # processes per node
    num_nodes: int
    global_batch: int
    reference_batch: int
    lr_scaling: str
    recipe_lr: float
    lr: float
    milestone_lrs: list[float]
    recipe_max_steps: int
    max_steps: int
    recipe_milestones: list[int]
    milestones: list[int]

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    @property
    def per_device_batch(self) -> int:
        return self.global_batch // self.world_size

    @property
    def images(self) -> int:
        return self.max_steps * self.global_batch

    @property
    def recipe_images(self) -> int:
        return self.recipe_max_steps * self.reference_batch

    def summary(self) -> str:
        """The one line a run prints at start, e.g. ``global batch 320 = 8 devices x 40 | lr 2.4e-4 (linear from
        3e-5 at 40) | 56,250 steps = 18.0M images (recipe: 18.0M)``."""
        layout = f"{self.devices} device{'s' if self.devices > 1 else ''}"
        if self.num_nodes > 1:
            layout = f"{self.num_nodes} nodes x {layout}"
        if self.global_batch == self.reference_batch:
            origin = f"the recipe's, at {self.reference_batch}"
        elif self.lr_scaling == "none":
            origin = f"the recipe's at {self.reference_batch}, not scaled: optim.lr_scaling=none"
        else:
            origin = f"{self.lr_scaling} from {format_lr(self.recipe_lr)} at {self.reference_batch}"
        images, recipe_images = format_images(self.images, self.recipe_images)
        return (
            f"global batch {self.global_batch} = {layout} x {self.per_device_batch} | "
            f"lr {format_lr(self.lr)} ({origin}) | "
            f"{self.max_steps:,} steps = {images} images (recipe: {recipe_images})"
        )

    def as_dict(self) -> dict[str, Any]:
        """What the run folder's config.yaml, the logger and every checkpoint record under ``scale``."""
        return {
            **asdict(self),
            "world_size": self.world_size,
            "per_device_batch": self.per_device_batch,
            "images": self.images,
            "recipe_images": self.recipe_images,
            "summary": self.summary(),
        }


def format_lr(lr: float) -> str:
    """``2.4e-4``, ``3e-5``: three significant digits, no padding."""
    mantissa, exponent = f"{lr:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def format_images(images: int, recipe_images: int) -> tuple[str, str]:
    """Both counts rounded (``18.0M``) when they are equal, else both exact, so that a difference always shows."""
    if images != recipe_images:
        return f"{images:,}", f"{recipe_images:,}"

    def rounded(count: int) -> str:
        if count >= 1_000_000:
            return f"{count / 1_000_000:.1f}M"
        if count >= 10_000:
            return f"{count / 1_000:.1f}k"
        return f"{count:,}"

    return rounded(images), rounded(recipe_images)


def lr_factor(lr_scaling: str, global_batch: int, reference_batch: int) -> float:
    ratio = global_batch / reference_batch
    return {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[lr_scaling]


def steps_for(recipe_steps: int, reference_batch: int, global_batch: int) -> int:
    """The steps of ``global_batch`` images that see as many images as ``recipe_steps`` of the reference batch,
    rounded up (exact integer arithmetic)."""
    return -(-recipe_steps * reference_batch // global_batch)


def devices_per_node(trainer: Any) -> int:
    """The devices (= processes) per node Lightning's Trainer will use for ``trainer.accelerator`` and
    ``trainer.devices`` (an int, a list of ids, a string such as "0,1", or "auto": every device of that kind, one on a
    CPU), read from Lightning's own accelerator classes without starting anything."""
    accelerator = ACCELERATOR_CLASSES[device_type(trainer.accelerator)]
    devices = list(trainer.devices) if isinstance(trainer.devices, ListConfig) else trainer.devices
    if devices == "auto":
        return accelerator.auto_device_count()
    try:
        return len(accelerator.get_parallel_devices(accelerator.parse_devices(devices)))
    except (TypeError, ValueError, MisconfigurationException) as error:
        reason = str(error).splitlines()[0]
        raise ConfigError(f"config key 'trainer.devices': {devices!r} does not work here: {reason}") from None


def scale_recipe(config: Any, devices: int) -> RunScale:
    """The run ``config`` describes on ``devices`` processes per node (``trainer.num_nodes`` nodes)."""
    optim, nodes, global_batch = config.optim, config.trainer.num_nodes, config.data.batch_size
    if optim.lr_scaling not in LR_SCALINGS:
        raise ConfigError(
            f"config key 'optim.lr_scaling': expected one of {', '.join(LR_SCALINGS)}, got {optim.lr_scaling!r}"
        )
    reference = global_batch if optim.reference_batch_size is None else optim.reference_batch_size
    if reference < 1:
        raise ConfigError(
            f"config key 'optim.reference_batch_size': expected null or an integer >= 1, got {reference!r}"
        )
    if nodes < 1:
        raise ConfigError(f"config key 'trainer.num_nodes': expected an integer >= 1, got {nodes!r}")
    world_size = devices * nodes
    if global_batch % world_size:
        raise ConfigError(
            f"config key 'data.batch_size': the global batch {global_batch} does not split over {world_size} "
            f"processes (trainer.devices {devices} x trainer.num_nodes {nodes}); use a multiple of {world_size}"
        )
    factor = lr_factor(optim.lr_scaling, global_batch, reference)
    max_steps = config.trainer.max_steps
    return RunScale(
        devices=devices,
        num_nodes=nodes,
        global_batch=global_batch,
        reference_batch=reference,
        lr_scaling=optim.lr_scaling,
        recipe_lr=optim.lr,
        lr=optim.lr * factor,
        milestone_lrs=[lr * factor for lr in optim.milestone_lrs],
        recipe_max_steps=max_steps,
        max_steps=steps_for(max_steps, reference, global_batch),
        recipe_milestones=list(optim.milestones),
        milestones=[steps_for(step, reference, global_batch) for step in optim.milestones],
    )


def resolve_scale(config: Any) -> RunScale:
    """``scale_recipe`` on the devices this machine gives the config."""
    return scale_recipe(config, devices_per_node(config.trainer))


class WorldSizeCheck(Callback):
    """Stops before any work when Lightning runs another number of processes than the batch was split for: a
    launcher (torchrun ``--nproc_per_node``/``--nnodes``, srun ``--ntasks-per-node``/``--nodes``) that disagrees
    with trainer.devices x trainer.num_nodes."""

    def __init__(self, scale: RunScale) -> None:
        self.scale = scale

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.world_size != self.scale.world_size:
            raise ConfigError(
                f"the launcher started {trainer.world_size} process{'es' if trainer.world_size > 1 else ''} but "
                f"the global batch "
                f"{self.scale.global_batch} was split for trainer.devices {self.scale.devices} x trainer.num_nodes "
                f"{self.scale.num_nodes} = {self.scale.world_size}; set them to match the launcher"
            )


def sync_batchnorm(requested: bool | None, device_type: str, world_size: int) -> bool:
    """Whether BatchNorm layers see the global batch: a split batch of 40 over 8 GPUs would otherwise normalise
    each GPU's 5 images by their own statistics, not the recipe's 40 (``trainer.sync_batchnorm``)."""
    if requested is None:
        return device_type == "cuda" and world_size > 1
    if requested and device_type != "cuda":
        raise ConfigError(
            f"config key 'trainer.sync_batchnorm': true needs CUDA (PyTorch's SyncBatchNorm runs on GPUs only), "
            f"but the run is on {device_type}; set it to false or null"
        )
    return requested
