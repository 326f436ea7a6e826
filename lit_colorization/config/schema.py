"""The configuration schemas of pretraining and the sections every command shares (trainer, logger).

Each is a dataclass loaded by ``lit_colorization.config.loading``: a key not declared here is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lit_colorization.data.data_config import DataConfig


@dataclass
class ModelConfig:
    """The network to pretrain (configs/models/<name>.yaml holds its paper recipe) and its initialisation."""

    name: str = "eccv16"
    # Constructor arguments of the network (e.g. ``width``), stored in checkpoints to rebuild it.
    kwargs: dict[str, Any] = field(default_factory=dict)
    # default: He initialisation; kraehenbuehl: the data-dependent initialisation the release trained its AlexNet
    # from (docs/reference.md section 4), measured on init_images training crops of a fresh run.
    init: str = "default"
    init_method: str = (
        "kmeans"  # kmeans | pca | gaussian: the filters before the within/between-layer scaling
    )
    init_images: int = 64


@dataclass
class TargetConfig:
    """The classification targets: ab bins, soft-encoding (k, sigma), class rebalancing (prior, lam), decoding T."""

    bins_path: str | None = None  # a (Q, 2) .npy of ab bin centres; None = the canonical 313
    prior_path: str | None = (
        None  # a (Q,) .npy prior; None = the run folder's prior.npy, computed first if absent
    )
    k: int = 5
    sigma: float = 5.0
    lam: float = 0.5
    rebalance: bool = True
    gray_threshold: float = 5.0
    temperature: float = 0.38


@dataclass
class OptimConfig:
    """Pretraining's optimizer, in the recipe's terms: lrs at ``reference_batch_size``, milestones in steps of it
    (lit_colorization/runtime/scaling.py turns them into this run's)."""

    lr: float = 3e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 1e-3
    milestones: list[int] = field(default_factory=lambda: [200_000])  # steps of the reference batch
    gamma: float = 0.1  # lr factor at each milestone, unless milestone_lrs gives the lr after each one
    milestone_lrs: list[float] = field(default_factory=list)
    # "paper": the network's recipe, configs/models/<model>.yaml, as the paper states it. Another name layers
    # configs/schedules/<model>/<name>.yaml over that recipe (e.g. eccv16's "release": the release's solver).
    schedule: str = "paper"
    # The recipe's global batch, which lr, milestones and trainer.max_steps are given for; None: data.batch_size.
    reference_batch_size: int | None = None
    lr_scaling: str = "none"  # none | linear | sqrt: the lrs scaled by global batch / reference_batch_size
    fused: bool | None = None  # fused Adam; None: on CUDA, not elsewhere (lit_colorization/runtime/perf.py)


@dataclass
class BaseTrainerConfig:
    """The Lightning Trainer settings of every command: where it runs, in what precision, how it reports."""

    accelerator: str = "auto"
    devices: Any = "auto"  # int, list of ids or "auto" (Makefile: GPUS)
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    log_every_n_steps: int = 50
    seed: int = 0
    progress_bar: bool = True
    # Steps between progress-bar updates; each update waits for the device to show the loss. None: every
    # step on a CPU, every CUDA_PROGRESS_BAR_STEPS steps on CUDA.
    progress_bar_every_n_steps: int | None = None


@dataclass
class TrainerConfig(BaseTrainerConfig):
    """Pretraining's trainer. Its ``precision`` also takes ``auto`` (bf16-mixed on CUDA, else 32-true); off CUDA,
    mixed precision and compile fall back to fp32 eager (lit_colorization/runtime/perf.py says so once)."""

    max_steps: int = (
        450_000  # steps of optim.reference_batch_size images (the run's own: scaled to its batch)
    )
    val_check_interval: Any = 1.0  # fraction of an epoch or a number of steps
    check_val_every_n_epoch: int | None = 1
    limit_val_batches: Any = 1.0
    checkpoint_every_n_steps: int = 1000  # steps between writes of last.ckpt (0: none on a step schedule)
    # Minutes between writes of last.ckpt (0: none on a clock), whichever of the two schedules comes first; a
    # write at max_steps always. The ImageNet presets write every 10 minutes rather than every 1,000 steps.
    checkpoint_every_minutes: float = 0.0
    # Write checkpoints in a thread (Lightning's AsyncCheckpointIO around the atomic writer): the step pays for
    # a copy of the state on the device, not for the file. A write that fails is reported at the next save.
    async_checkpoint: bool = False
    validate_before_training: bool = True  # a fresh run first scores the untrained network (logged at step 0)
    gradient_clip_val: float | None = None
    channels_last: bool = False
    compile: bool = False  # torch.compile of the network, in place (CUDA only)
    # BatchNorm statistics over the global batch (SyncBatchNorm) when it is split over processes, as the recipe's
    # one-GPU batch had them; null: on for CUDA runs of several processes (SyncBatchNorm works on GPUs only).
    sync_batchnorm: bool | None = None
    tf32: bool = True  # TF32 for what stays fp32 on CUDA (matmuls and convolutions)


@dataclass
class LoggerConfig:
    """Where metrics go: W&B, CSV, TensorBoard or nowhere; project, group, tags and run name."""

    kind: str = "auto"  # auto (wandb when configured, else csv) | wandb | csv | tensorboard | none
    project: str = "lit-colorization"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    name: str | None = None  # defaults to the run name


@dataclass
class OnlineEvalConfig:
    """Per-layer online linear probes and kNN while pretraining (lit_colorization/online_eval/callback.py)."""

    enabled: bool = True
    layers: list[str] = field(default_factory=list)  # empty: every feature layer of the network
    # The heads' own SGD, a step per training batch. On BatchNorm-normalised inputs of ~9,000 dimensions a step
    # moves the logits by about lr x 9,000 x the gradient: on the embedded photos' fixed features, lr 3e-4 gave
    # the best heads of 1e-4..1e-2 (30% mean top-1 over the layers; at 1e-2 conv8 fell to 1%).
    lr: float = 3e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    knn_k: int = 20  # Wu et al. 2018's weighted kNN: k neighbours, votes exp(cosine similarity / T)
    knn_temperature: float = 0.07
    # Training crops in the kNN bank, rebuilt at each validation (spread evenly over the training set;
    # under DDP each rank holds 1/world_size of them).
    knn_bank_size: int = 10_000
    # Keep the heads and their optimizer in checkpoints (at 1000 classes about half of an eccv16 checkpoint's
    # 0.94 GB); false: only the history is kept and a resumed run trains its heads afresh.
    save_heads: bool = False


@dataclass
class PretrainConfig:
    run: str = "sample"
    runs_dir: str = "runs"
    resume: str | None = None  # "auto" (the run's last checkpoint, if any) or a checkpoint path
    loss: str = "classification"  # classification | l2 (the paper's regression baseline)
    num_val_images_logged: int = 8
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    online_eval: OnlineEvalConfig = field(default_factory=OnlineEvalConfig)
