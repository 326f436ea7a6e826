"""Training throughput in one table, from the network alone to JPEG files on disk, against the original pipeline.

    python benchmarks/bench.py [--device auto|cpu|cuda] [--size S] [--batch B] [--steps N] [--width W] ...

Rows, in images per second:
  (a) model step: the network's train step on random L and random soft targets (forward, loss, backward, Adam).
  (b) pretraining step: uint8 RGB batches already on the device -> targets (Lab, soft-encoding, weights) -> (a),
      through ColorizationModule's own ``targets`` and ``forward_loss``.
  (c) end to end: JPEG files on disk (500x375, made from scikit-image's sample photos) trained on by
      ``pretrain.pretrain`` itself, the Lightning loop of ``make pretrain`` with its callbacks, logging and
      default progress bar (no validation, no logger). A callback times whole steps, from the end of the last
      warm-up step to the end of the last timed one, and the final checkpoint is written after that.
      With --decode gpu (the default on CUDA) workers only read bytes and the device decodes and crops;
      with --decode cpu (the default elsewhere) workers decode and crop with PIL.
  (c0) the same data path in a bare loop (no Lightning): next batch -> the device cropper (--decode gpu) ->
      ``module.targets`` -> (a)'s step. A diagnostic: (c)/(c0) is what the Lightning loop costs.
  (d) original pipeline: workers decode and crop with PIL, then scikit-image Lab and a scikit-learn ball tree
      soft-encode each crop on the CPU (the authors' data path), then the same step on the device.
  (e) probe trunk: AlexNet forward to conv5, no gradients.
  (f) probe, five layers: the trunk plus linear heads on conv1..conv5 trained in one pass (transfer.probe.module).
  (h) probe end to end: ``make linear-probe``'s ``probe()`` itself, the zhang16 probe of a random AlexNet (the
      --width given) on conv1..conv5, trained from JPEG files in class folders through its Lightning loop;
      decoded as (c) is (--decode), cropped to the probe's size; timed by the same step clock as (c).
  (g) pretraining step with online evaluation: (b), plus what ``OnlineEvaluation`` does after every training step
      (its hooks' features of conv1..conv8, one SGD step of a linear head per layer; 1000-way unless
      --online-classes says otherwise).
  (a-eccv16), (c-eccv16), (a-alexnet), (c-alexnet): the presets users run, ``eccv16_imagenet`` and
      ``alexnet_imagenet``, as shipped on CUDA (their batch, crop, resize, GPU decode, perf settings, online
      evaluation and checkpoint writer; on a CPU at the bench's small batch, crop and width) through
      ``pretrain`` with validation off and an epoch longer than the fit, each beside its network's model-only
      step at the same batch (a-*); the checkpoint at max_steps is timed apart and put at the preset's cadence.
      Then (c-eccv16) again with data.decode_ahead false and true: the next batch prepared in series with the
      step, or by a thread while it runs.
  (h) the probe end to end: a slot, not measured here (its GPU decode is another issue's).
  (k), (k0): the device's resize-and-crop of a batch of 500x375 photos as the ImageNet presets cut them, in one
      pass (data/encoded.py) and tap by tap as before it.
  (l), (l0), (lk): sRGB -> Lab on a float batch: the library's (kornia's, constants kept on the device), the
      hand-written one it replaced and kornia's own; on CUDA with the host's waits per call.
Then the ratios (b)/(a), (c)/(a), (c)/(d), (f)/(e) and (c)/(c0), and the step time with online evaluation over
the step time without it, (b)/(g); FLOPs per image of one train step
(FlopCounterMode on the meta device) and model FLOP utilisation against the device's bf16 peak (on a CPU,
against a measured fp32 matmul rate); and on CUDA the peak memory of (b). Defaults are the paper's sizes on
CUDA (176x176, batch 128, eccv16 width 1, bf16 + channels_last + compile) and small ones on a CPU (whole run
about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import io
import itertools
import math
import os
import platform
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kornia.color
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from PIL import Image
from skimage import color as skcolor
from skimage import data as skdata
from sklearn.neighbors import NearestNeighbors
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from lit_colorization.color import ab_bins, rebalance_weights, rgb_to_lab
from lit_colorization.color.lab import D65_WHITE, RGB_TO_XYZ
from lit_colorization.color.targets import ColorTargets
from lit_colorization.config.loading import load_config
from lit_colorization.config.schema import PretrainConfig
from lit_colorization.data import ImageFolderDataset, SeededShuffleSampler, SkipUnreadableCollate
from lit_colorization.data.crops import SQUASH, Resize
from lit_colorization.data.encoded import (
    MAX_TAPS,
    DeviceCropper,
    EncodedCollate,
    EncodedImageFolderDataset,
    crop_boxes,
    resized_crops,
    to_device,
)
from lit_colorization.models import create_model
from lit_colorization.online_eval.probes import FeatureTap, OnlineProbes, feature_shapes
from lit_colorization.pretrain.losses import soft_cross_entropy
from lit_colorization.pretrain.module import ColorizationModule
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.pretraining import pretrain
from lit_colorization.pretrain.priors import save_prior
from lit_colorization.runtime.perf import PerfSettings, enable_tf32, resolve
from lit_colorization.runtime.trainer import CUDA_PROGRESS_BAR_STEPS
from transfer.probe.linear_probe import probe
from transfer.probe.module import STANDARD_LAYERS, build_heads
from transfer.probe.probe_config import PROBE
from transfer.probe.protocols import ZHANG16
from transfer.trunk import Trunk

# Dense bf16 tensor-core peaks (FLOP/s), matched against torch.cuda.get_device_name in this order.
BF16_PEAKS = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12))
PHOTOS = (skdata.astronaut, skdata.coffee, skdata.chelsea, skdata.rocket)
JPEG_SIZE = (500, 375)  # width, height: a typical ImageNet photo
JPEG_QUALITY = 90
PROBE_CLASSES = 1000
TARGETS_K = 5
SIGMA = 5.0
MANY_STEPS = 30  # timed calls of the Lab and crop rows at least
VAL_IMAGES = len(PHOTOS)  # one per class: the data module lists the split even with validation off


@dataclass(frozen=True)
class Options:
    device: torch.device
    size: int
    batch: int
    steps: int
    warmup: int
    width: float
    workers: int
    images: int
    decode: str
    probe_size: int
    threads: int
    online_classes: int
    settings: PerfSettings
    rows: str = "all"


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--size", type=int, help="crop side (default 176 on CUDA, 64 on a CPU)")
    parser.add_argument("--batch", type=int, help="batch size (default 128 on CUDA, 16 on a CPU)")
    parser.add_argument("--steps", type=int, help="timed steps per row (default 20 on CUDA, 3 on a CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 5 on CUDA, 1 on a CPU)")
    parser.add_argument(
        "--width", type=float, help="network width multiplier (default 1 on CUDA, 0.25 on a CPU)"
    )
    parser.add_argument("--workers", type=int, help="DataLoader workers for (c) and (d) (default: CPU cores)")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads of the main process (default on a CPU: cores - workers, >= 1)",
    )
    parser.add_argument(
        "--images", type=int, help="JPEG files to generate (default: 1024 on CUDA, 2 batches else)"
    )
    parser.add_argument("--decode", default="auto", choices=("auto", "cpu", "gpu"), help="(c): who decodes")
    parser.add_argument(
        "--probe-size", type=int, help="linear-probe crop side (default 227 on CUDA, 64 on a CPU)"
    )
    parser.add_argument(
        "--online-classes",
        type=int,
        default=PROBE_CLASSES,
        help="(g): classes of the online heads (default 1000, ImageNet's; the embedded photos have 10)",
    )
    parser.add_argument(
        "--rows",
        default="all",
        choices=("all", "core", "presets"),
        help="core: (a) to (g) and Lab; presets: (c-eccv16), (c-alexnet) and their model steps; all: both",
    )
    parser.add_argument("--precision", default="auto", choices=("auto", "32-true", "bf16-mixed"))
    parser.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, help="default: on CUDA only"
    )
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, help="default: on CUDA only")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    cuda = device.type == "cuda"

    def pick(value: int | float | None, on_cuda: int | float, elsewhere: int | float) -> int | float:
        return value if value is not None else (on_cuda if cuda else elsewhere)

    batch = int(pick(args.batch, 128, 16))
    cores = len(os.sched_getaffinity(0))
    workers = args.workers if args.workers is not None else cores
    # On a CPU the workers and the main process share the cores; OpenMP threads that find their cores
    # taken wait at every barrier, which made steps 10x slower in tests on 2 cores.
    threads = args.threads or (torch.get_num_threads() if cuda else max(1, cores - workers))
    warmup, steps = int(pick(args.warmup, 5, 1)), int(pick(args.steps, 20, 3))
    options = Options(
        device=device,
        size=int(pick(args.size, 176, 64)),
        batch=batch,
        steps=steps,
        warmup=warmup,
        width=float(pick(args.width, 1.0, 0.25)),
        workers=workers,
        images=int(pick(args.images, 1024, 2 * batch)),
        decode=args.decode if args.decode != "auto" else ("gpu" if cuda else "cpu"),
        probe_size=int(pick(args.probe_size, 227, 64)),
        threads=threads,
        online_classes=args.online_classes,
        rows=args.rows,
        settings=resolve(
            device.type,
            precision=args.precision,
            channels_last=pick(args.channels_last, True, False),
            compile=pick(args.compile, True, False),
        ),
    )
    positive = {
        "--size": options.size,
        "--batch": batch,
        "--steps": steps,
        "--images": options.images,
        "--online-classes": options.online_classes,
    }
    for flag, value in positive.items():
        if value < 1:
            parser.error(f"{flag} must be positive, got {value}")
    if warmup < 0 or options.workers < 0 or (args.threads is not None and args.threads < 1):
        parser.error("--warmup and --workers must be >= 0, --threads >= 1")
    if options.size % 4:
        parser.error(f"--size must be a multiple of eccv16's output stride 4, got {options.size}")
    return options


# --- timing -------------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_window(options: Options) -> tuple[int, int]:
    """(warm-up, timed) steps of a row fed by DataLoader workers: see ``images_per_second``."""
    return max(options.warmup, options.workers), max(options.steps, 2 * options.workers)


def images_per_second(step: Callable[[], int], options: Options, loader: bool = False) -> float:
    """Images per second over the timed calls of ``step`` (each returns its image count), after warm-up.

    Loader rows warm up for at least one batch per worker and time at least two per worker: workers start
    together and deliver their batches in waves, so a window of whole waves, after the first, measures their
    pace rather than a backlog queued before the clock started.
    """
    warmup, steps = loader_window(options) if loader else (options.warmup, options.steps)
    for _ in range(warmup):
        step()
    synchronize(options.device)
    start = time.perf_counter()
    images = sum(step() for _ in range(steps))
    synchronize(options.device)
    return images / (time.perf_counter() - start)


def autocast(settings: PerfSettings) -> torch.autocast:
    dtype = settings.autocast_dtype
    return torch.autocast(settings.device, dtype=dtype or torch.float32, enabled=dtype is not None)


# --- the pretraining module, and one train step ---------------------------------------------------------------


def module_overrides(options: Options) -> list[str]:
    """Config overrides for the network, targets and perf settings: the same for every row's module."""
    settings = options.settings
    return [
        "model.name=eccv16",
        f"model.kwargs.width={options.width}",
        f"data.crop_size={options.size}",
        f"targets.k={TARGETS_K}",
        f"trainer.accelerator={options.device.type}",
        f"trainer.precision={settings.precision}",
        f"trainer.channels_last={settings.channels_last}",
        f"trainer.compile={settings.compile}",
    ]


def uniform_prior() -> Tensor:
    num_bins = ab_bins().shape[0]
    return torch.full((num_bins,), 1.0 / num_bins)


def build_module(options: Options) -> tuple[ColorizationModule, torch.optim.Optimizer]:
    config = load_config(PretrainConfig, overrides=module_overrides(options))
    module = ColorizationModule(config, ab_bins(), uniform_prior()).to(options.device)
    enable_tf32(module.perf)
    return module, module.configure_optimizers()["optimizer"]


def train_step(module: ColorizationModule, optimizer: torch.optim.Optimizer, targets: ColorTargets) -> int:
    optimizer.zero_grad(set_to_none=True)
    with autocast(module.perf):
        loss = module.forward_loss(targets)
    loss.backward()
    optimizer.step()
    return targets.lightness.shape[0]


def random_targets(options: Options, num_bins: int) -> ColorTargets:
    batch, size, device = options.batch, options.size, options.device
    side = size // 4
    return ColorTargets(
        lightness=torch.rand(batch, 1, size, size, device=device) * 100,
        ab=torch.zeros(batch, 2, size, size, device=device),
        target_ab=torch.zeros(batch, 2, side, side, device=device),
        bin_indices=torch.randint(0, num_bins, (batch, TARGETS_K, side, side), device=device),
        bin_weights=torch.rand(batch, TARGETS_K, side, side, device=device).softmax(dim=1),
        pixel_weights=torch.ones(batch, side, side, device=device),
        colored=torch.ones(batch, dtype=torch.bool, device=device),
    )


def flops_per_image(options: Options) -> float:
    """FLOPs of one train step (forward, loss, backward) per image, counted on the meta device (no compute)."""
    with torch.device("meta"):
        network = create_model("eccv16", width=options.width)
        side = options.size // 4
        lightness = torch.rand(2, 1, options.size, options.size)
        indices = torch.randint(0, 313, (2, TARGETS_K, side, side))
        weights = torch.rand(2, TARGETS_K, side, side)
        with FlopCounterMode(display=False) as counter:
            loss = soft_cross_entropy(
                network(lightness),
                indices,
                weights,
                torch.ones(2, side, side),
                torch.ones(2, dtype=torch.bool),
            )
            loss.backward()
    return counter.get_total_flops() / 2


def peak_flops(device: torch.device) -> tuple[float, str]:
    """The device's dense bf16 peak from ``BF16_PEAKS``; on a CPU a measured fp32 matmul rate. 0 if unknown."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in BF16_PEAKS:
            if key in name:
                return peak, f"{name}: bf16 dense peak {peak / 1e12:.0f} TFLOP/s"
        return 0.0, f"{name}: bf16 peak unknown (not in BF16_PEAKS)"
    matrix = torch.randn(2048, 2048)
    matrix @ matrix
    # The best of several products: the machine's rate, not that of a moment it was busy with other work.
    seconds = []
    for _ in range(5):
        start = time.perf_counter()
        matrix @ matrix
        seconds.append(time.perf_counter() - start)
    rate = 2 * 2048**3 / min(seconds)
    return rate, f"CPU: no bf16 peak; against a measured fp32 matmul rate of {rate / 1e9:.0f} GFLOP/s"


# --- (c) and (d): data from JPEG files ---------------------------------------------------------------------------


def write_jpegs(folder: Path, count: int, split_name: str = "train", classes: int = len(PHOTOS)) -> Path:
    """``count`` 500x375 JPEGs under ``folder/<split_name>/class_<i>/``: random crops of scikit-image's photos,
    scaled, spread over ``classes`` class folders (labels for the presets' online evaluation)."""
    split = folder / split_name
    photos = [photo() for photo in PHOTOS]
    for label in range(classes):
        (split / f"class_{label:04d}").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        crop_height = int(height * rng.uniform(0.6, 1.0))
        crop_width = min(width, int(crop_height * JPEG_SIZE[0] / JPEG_SIZE[1]))
        top = int(rng.integers(0, height - crop_height + 1))
        left = int(rng.integers(0, width - crop_width + 1))
        window = Image.fromarray(photo[top : top + crop_height, left : left + crop_width])
        window.resize(JPEG_SIZE, Image.Resampling.BILINEAR).save(
            split / f"class_{index % classes:04d}" / f"{index:05d}.jpg", quality=JPEG_QUALITY
        )
    return split


def endless(loader: DataLoader, sampler: SeededShuffleSampler) -> Iterator[dict]:
    for epoch in itertools.count():
        sampler.set_epoch(epoch)
        yield from loader


def loader_for(dataset: Dataset, options: Options, collate: Callable) -> Iterator[dict]:
    sampler = SeededShuffleSampler(dataset, seed=0)
    loader = DataLoader(
        dataset,
        batch_size=options.batch,
        sampler=sampler,
        num_workers=options.workers,
        collate_fn=collate,
        pin_memory=options.device.type == "cuda",
        persistent_workers=options.workers > 0,
        drop_last=True,
    )
    return endless(loader, sampler)


def end_to_end_step(
    module: ColorizationModule,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[dict],
    cropper: DeviceCropper | None,
) -> Callable[[], int]:
    def step() -> int:
        batch = next(batches)
        rgb = (
            cropper(batch, module.device)["rgb"]
            if cropper
            else batch["rgb"].to(module.device, non_blocking=True)
        )
        return train_step(module, optimizer, module.targets(rgb))

    return step


class StepClock(Callback):
    """Times the steps ``warmup`` .. ``warmup + steps - 1`` (counted from 0) of a Lightning fit.

    The clock runs from the end of the last warm-up step to the end of the last timed one, so the window holds
    whole steps as (c0) times them (each batch's fetch, decode and targets included) and every hook between
    them, progress-bar updates too. Callbacks passed to ``pretrain`` run after its ``StepCheckpoint``, so the
    fit must go on for a step after the window: the checkpoint written at ``max_steps`` then falls outside it.

    On CUDA it also counts the host's waits for the device inside the window (PyTorch's sync debug mode warns
    at each): a wait leaves the device idle while the host prepares what comes next.
    """

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup = warmup
        self.steps = steps
        self.images = 0
        self._start: float | None = None
        self.seconds: float | None = None
        self.host_waits: Counter[str] | None = None  # by the Python line that made the host wait
        self.checkpoint_seconds: list[float] = []  # each save's time on the training thread
        self._warnings: warnings.catch_warnings | None = None
        self._caught: list[warnings.WarningMessage] = []

    def _start_clock(self, device: torch.device) -> None:
        synchronize(device)
        self._start = time.perf_counter()
        if device.type == "cuda":
            self._warnings = warnings.catch_warnings(record=True)
            self._caught = self._warnings.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def _stop_clock(self, device: torch.device) -> None:
        if self._warnings is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._warnings.__exit__(None, None, None)
            self.host_waits = Counter(
                wait_place(caught) for caught in self._caught if "synchronizing" in str(caught.message)
            )
        synchronize(device)
        self.seconds = time.perf_counter() - self._start

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Time every ``trainer.save_checkpoint`` as the step sees it: with an asynchronous writer, the copy of
        the state only; the device's queue is drained first, so that its work is not counted as the save's."""
        save = trainer.save_checkpoint

        def timed_save(*args: Any, **kwargs: Any) -> None:
            synchronize(pl_module.device)
            start = time.perf_counter()
            save(*args, **kwargs)
            synchronize(pl_module.device)
            self.checkpoint_seconds.append(time.perf_counter() - start)

        trainer.save_checkpoint = timed_save

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.warmup == 0 and trainer.global_step == 0:  # no earlier step end to start from
            self._start_clock(pl_module.device)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        finished = trainer.global_step  # optimizer steps done, this one included
        if finished == self.warmup:
            self._start_clock(pl_module.device)
        elif self.warmup < finished <= self.warmup + self.steps:
            self.images += batch["rgb"].shape[0]
            if finished == self.warmup + self.steps:
                self._stop_clock(pl_module.device)

    def rate(self) -> float:
        if self.seconds is None:
            raise RuntimeError(f"the fit ended before its step {self.warmup + self.steps}: nothing was timed")
        return self.images / self.seconds


def wait_place(caught: warnings.WarningMessage) -> str:
    """``package/module.py:line`` of the Python line whose call made the host wait (sync debug mode's warning)."""
    path = Path(caught.filename)
    for root in ("site-packages", "lit_colorization", "transfer", "benchmarks"):
        if root in path.parts:
            start = path.parts.index(root) + (root == "site-packages")
            return f"{'/'.join(path.parts[start:])}:{caught.lineno}"
    return f"{path.name}:{caught.lineno}"


def lightning_loop_rate(
    options: Options, data_root: Path, workdir: Path
) -> tuple[float, Counter[str] | None]:
    """Images per second of ``pretrain`` on the JPEGs of ``data_root``, as ``make pretrain`` trains on them,
    and on CUDA the host's waits for the device in the timed steps.

    Validation is off (its split is still read when the data module is set up); the progress bar stays as a
    user gets it, since its per-step cost is part of the loop.
    """
    warmup, steps = loader_window(options)
    clock = StepClock(warmup, steps)
    prior = save_prior(uniform_prior(), workdir / "uniform_prior.npy")
    overrides = [
        *module_overrides(options),
        "data.source=folder",
        f"data.root={data_root}",
        f"data.decode={options.decode}",
        f"data.batch_size={options.batch}",
        f"data.num_workers={options.workers}",
        f"targets.prior_path={prior}",
        f"runs_dir={workdir / 'runs'}",
        "run=bench",
        "logger.kind=none",
        "trainer.devices=1",
        f"trainer.max_steps={warmup + steps + 1}",  # one step past the window: see StepClock
        "trainer.checkpoint_every_n_steps=0",
        "trainer.validate_before_training=false",
        "trainer.limit_val_batches=0",
        # Like (c0), without the online evaluation, whose cost (g) measures on its own.
        "online_eval.enabled=false",
    ]
    pretrain(load_config(PretrainConfig, overrides=overrides), extra_callbacks=[clock])
    return clock.rate(), clock.host_waits


# (row, preset): the configurations users run, each beside its network's model-only step at the same batch.
PRESET_ROWS = (("c-eccv16", "eccv16_imagenet"), ("c-alexnet", "alexnet_imagenet"))
PRESET_TARGETS = {"c-eccv16": ">= 0.9, and >= 3,000 images/s", "c-alexnet": ">= 6,000 images/s"}


@dataclass(frozen=True)
class PresetRow:
    """A preset as ``make pretrain PRESET=...`` runs it; on a CPU at the bench's small batch, crop and width."""

    key: str
    preset: str
    model: str
    batch: int
    crop: int
    overrides: tuple[str, ...]  # the CPU's sizes (none on CUDA: the preset as shipped)
    checkpoint_every_n_steps: int
    checkpoint_every_minutes: float

    def images_needed(self, options: Options) -> int:
        """Training JPEGs for an epoch longer than the whole fit: no epoch boundary inside the timed window."""
        warmup, steps = loader_window(options)
        return self.batch * (warmup + steps + 2)


def preset_row(options: Options, key: str, preset: str, root: Path) -> PresetRow:
    sizes = (
        ()
        if options.device.type == "cuda"
        else (
            f"data.batch_size={options.batch}",
            # trainer.max_steps counts steps of this batch (not of the recipe's, which it would be scaled by)
            f"optim.reference_batch_size={options.batch}",
            f"data.crop_size={options.size}",
            f"model.kwargs.width={options.width}",
        )
    )
    config = preset_config(preset, root, [*sizes])
    return PresetRow(
        key=key,
        preset=preset,
        model=config.model.name,
        batch=config.data.batch_size,
        crop=config.data.crop_size,
        overrides=sizes,
        checkpoint_every_n_steps=config.trainer.checkpoint_every_n_steps,
        checkpoint_every_minutes=config.trainer.checkpoint_every_minutes,
    )


def preset_config(preset: str, root: Path, overrides: list[str]) -> PretrainConfig:
    """The preset as ``make pretrain`` loads it (base, network recipe, preset, overrides), on the bench's device."""
    return PRETRAIN.load(preset, [f"data.root={root}", *overrides])


def preset_model_rate(options: Options, row: PresetRow, root: Path) -> float:
    """Images/s of the preset's network alone (its perf settings, batch and crop): the train step on targets
    built once from random pixels, no data path."""
    config = preset_config(row.preset, root, [*row.overrides, f"trainer.accelerator={options.device.type}"])
    module = ColorizationModule(config, ab_bins(), uniform_prior()).to(options.device)
    enable_tf32(module.perf)
    optimizer = module.configure_optimizers()["optimizer"]
    rgb = torch.randint(0, 256, (row.batch, 3, row.crop, row.crop), dtype=torch.uint8, device=options.device)
    targets = module.targets(rgb)
    return images_per_second(lambda: train_step(module, optimizer, targets), options)


@dataclass(frozen=True)
class PresetLoop:
    rate: float  # images/s of the timed steps, checkpoints outside the window
    host_waits: Counter[str] | None
    checkpoint_seconds: float  # the longest save as the step saw it (the final one, at max_steps)
    checkpoint_share: float  # that time over the time between two saves at the preset's cadence


def preset_loop(
    options: Options, row: PresetRow, root: Path, workdir: Path, decode_ahead: bool | None = None
) -> PresetLoop:
    """``pretrain`` with the preset as shipped: its data path (resize, GPU decode, workers), online evaluation,
    perf settings and checkpoint writer; validation off, and the epoch longer than the fit. The checkpoint at
    ``max_steps`` falls after the timed window and is timed on its own, then put at the preset's cadence.
    ``decode_ahead`` overrides ``data.decode_ahead`` (None: the preset's, on for CUDA)."""
    warmup, steps = loader_window(options)
    clock = StepClock(warmup, steps)
    prior = save_prior(uniform_prior(), workdir / f"uniform_prior_{row.key}.npy")
    overrides = [
        *row.overrides,
        f"trainer.accelerator={options.device.type}",
        f"data.num_workers={options.workers}",
        f"targets.prior_path={prior}",
        f"runs_dir={workdir / 'runs'}",
        f"run=bench-{row.key}-{decode_ahead}",
        "logger.kind=none",
        "trainer.devices=1",
        f"trainer.max_steps={warmup + steps + 1}",
        "trainer.validate_before_training=false",
        "trainer.limit_val_batches=0",
        "data.index_cache=null",
        *([] if decode_ahead is None else [f"data.decode_ahead={decode_ahead}"]),
    ]
    pretrain(preset_config(row.preset, root, overrides), extra_callbacks=[clock])
    rate = clock.rate()
    save = max(clock.checkpoint_seconds, default=0.0)
    if row.checkpoint_every_minutes > 0:
        between = 60 * row.checkpoint_every_minutes
    else:
        between = (
            row.checkpoint_every_n_steps * row.batch / rate if row.checkpoint_every_n_steps else math.inf
        )
    return PresetLoop(rate, clock.host_waits, save, save / between)


# --- sRGB -> Lab: the library's (kornia's, constants kept on the device) against the hand-written one ----------


def hand_written_rgb_to_lab(rgb: Tensor) -> Tensor:
    """The conversion color/lab.py had before it went through kornia (commit 3153262): every constant a Python
    number, nine multiply-adds for XYZ. Kept here as the comparison."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).pow(2.4), rgb / 12.92)
    red, green, blue = linear.unbind(dim=1)

    def f(row: tuple[float, float, float], white: float) -> Tensor:
        t = (row[0] * red + row[1] * green + row[2] * blue) / white
        return torch.where(t > 0.008856, t.clamp(min=0.008856).pow(1 / 3), 7.787 * t + 4 / 29)

    fx, fy, fz = (f(row, white) for row, white in zip(RGB_TO_XYZ, D65_WHITE, strict=True))
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def tap_by_tap_crops(
    images: Sequence[Tensor],
    top: Tensor,
    left: Tensor,
    box_height: Tensor,
    box_width: Tensor,
    mirror: Tensor,
    size: int,
) -> Tensor:
    """``resized_crops`` as it was at commit 3153262: four gathers per bilinear tap, taps x taps of them. Kept here
    as the comparison for the one pass that replaced it (and as its oracle in tests/data/test_fused_crop.py)."""
    device = images[0].device
    heights = torch.tensor([image.shape[-2] for image in images], dtype=torch.int64)
    widths = torch.tensor([image.shape[-1] for image in images], dtype=torch.int64)
    plane = heights * widths
    start = torch.cumsum(3 * plane, 0) - 3 * plane  # where each image begins in the flat buffer
    row_scale = box_height.to(torch.float64) / size
    col_scale = box_width.to(torch.float64) / size
    largest = max(float(row_scale.max()), float(col_scale.max()))
    taps = min(MAX_TAPS, max(1, math.ceil(largest - 1e-9)))
    flat = torch.cat([image.reshape(-1) for image in images])

    numbers = torch.stack([top, left, row_scale, col_scale, heights, widths, mirror], dim=1).to(torch.float64)
    top_d, left_d, row_scale_d, col_scale_d, height_d, width_d, mirror_d = to_device(
        numbers.float(), device
    ).T[:, :, None]
    plane_base = to_device(start[:, None] + torch.arange(3) * plane[:, None], device)[:, :, None, None]
    row_stride = to_device(widths, device)[:, None, None, None]
    # Sample positions in output-pixel units, pixel by pixel and taps within a pixel: (S * taps,).
    steps = torch.arange(size, device=device)[:, None] + (torch.arange(taps, device=device) + 0.5) / taps
    steps = steps.reshape(-1)
    rows = (top_d + steps * row_scale_d - 0.5).clamp(min=0)
    cols = (left_d + steps * col_scale_d - 0.5).clamp(min=0)
    cols = torch.where(mirror_d > 0, cols.flip(-1), cols)
    rows = torch.minimum(rows, height_d - 1).view(-1, size, taps)
    cols = torch.minimum(cols, width_d - 1).view(-1, size, taps)

    def read(row: Tensor, col: Tensor) -> Tensor:
        index = plane_base + row.long()[:, None, :, None] * row_stride + col.long()[:, None, None, :]
        return flat.take(index).to(torch.float32)

    total = torch.zeros(len(images), 3, size, size, device=device)
    for row_tap in range(taps):
        row = rows[..., row_tap]
        row_low = row.floor()
        row_high = torch.minimum(row_low + 1, height_d - 1)
        row_frac = (row - row_low)[:, None, :, None]
        for col_tap in range(taps):
            col = cols[..., col_tap]
            col_low = col.floor()
            col_high = torch.minimum(col_low + 1, width_d - 1)
            col_frac = (col - col_low)[:, None, None, :]
            upper = read(row_low, col_low) * (1 - col_frac) + read(row_low, col_high) * col_frac
            lower = read(row_high, col_low) * (1 - col_frac) + read(row_high, col_high) * col_frac
            total += upper * (1 - row_frac) + lower * row_frac
    return (total / (taps * taps)).round_().clamp_(0, 255).to(torch.uint8)


def crop_rows(options: Options) -> dict[str, float]:
    """Images/s of the device's resize-and-crop of a batch of 500x375 photos, as the ImageNet presets cut them
    (squashed to 256, ``--size`` crops, 2 taps): the one pass of data/encoded.py and the tap-by-tap one."""
    generator = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (3, JPEG_SIZE[1], JPEG_SIZE[0]), dtype=torch.uint8, generator=generator).to(
            options.device
        )
        for _ in range(options.batch)
    ]
    crop = torch.rand(options.batch, 3, generator=generator, dtype=torch.float64)
    heights = torch.full((options.batch,), JPEG_SIZE[1])
    widths = torch.full((options.batch,), JPEG_SIZE[0])
    boxes = crop_boxes(heights, widths, crop, options.size, Resize(256, SQUASH))
    mirror = (crop[:, 2] < 0.5).double()
    return {
        key: images_per_second(lambda cut=cut: cut(images, *boxes, mirror, options.size).shape[0], options)
        for key, cut in (("k", resized_crops), ("k0", tap_by_tap_crops))
    }


def count_host_waits(convert: Callable[[Tensor], Tensor], rgb: Tensor) -> int | None:
    """Host waits for the device in one call (CUDA's sync debug mode); None on a CPU."""
    if rgb.device.type != "cuda":
        return None
    convert(rgb)
    synchronize(rgb.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            convert(rgb)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(warning.message) for warning in caught)


def lab_rows(options: Options) -> tuple[dict[str, float], dict[str, int | None], float]:
    """Images/s of sRGB -> Lab on a float batch: the library's, the hand-written one, kornia's own; host waits per
    call of each; the largest difference of the library's from the hand-written one."""
    rgb = torch.rand(options.batch, 3, options.size, options.size, device=options.device)
    conversions = {"l": rgb_to_lab, "l0": hand_written_rgb_to_lab, "lk": kornia.color.rgb_to_lab}
    rates, waits = {}, {}
    for key, convert in conversions.items():
        rates[key] = images_per_second(lambda convert=convert: convert(rgb).shape[0], options)
        waits[key] = count_host_waits(convert, rgb)
    gap = float((rgb_to_lab(rgb) - hand_written_rgb_to_lab(rgb)).abs().max())
    return rates, waits, gap


class OriginalPipelineDataset(Dataset):
    """The authors' data path per image: PIL crop, scikit-image Lab, scikit-learn k nearest bins, on the CPU."""

    def __init__(self, crops: ImageFolderDataset, bins: Tensor, class_weights: Tensor, stride: int) -> None:
        self.crops = crops
        self.stride = stride
        self.neighbours = NearestNeighbors(n_neighbors=TARGETS_K, algorithm="ball_tree").fit(
            bins.double().numpy()
        )
        self.class_weights = class_weights.numpy()

    def __len__(self) -> int:
        return len(self.crops)

    def set_epoch(self, epoch: int) -> None:
        self.crops.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rgb, _ = self.crops[index]
        lab = skcolor.rgb2lab(rgb.permute(1, 2, 0).numpy()).astype(np.float32)
        ab = lab[..., 1:]
        target_ab = ab[:: self.stride, :: self.stride]
        side = target_ab.shape[0]
        distances, indices = self.neighbours.kneighbors(target_ab.reshape(-1, 2))
        weights = np.exp(-(distances**2) / (2 * SIGMA**2))
        weights /= weights.sum(axis=1, keepdims=True)

        def per_bin(values: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(values.T.reshape(TARGETS_K, side, side)))

        return {
            "lightness": torch.from_numpy(np.ascontiguousarray(lab[None, ..., 0])),
            "ab": torch.from_numpy(np.ascontiguousarray(ab.transpose(2, 0, 1))),
            "target_ab": torch.from_numpy(np.ascontiguousarray(target_ab.transpose(2, 0, 1))),
            "bin_indices": per_bin(indices),
            "bin_weights": per_bin(weights.astype(np.float32)),
            "pixel_weights": torch.from_numpy(self.class_weights[indices[:, 0]].reshape(side, side)),
            "colored": torch.tensor(bool(np.abs(ab).max() >= 5.0)),
        }


def original_step(
    module: ColorizationModule, optimizer: torch.optim.Optimizer, batches: Iterator[dict]
) -> Callable[[], int]:
    def step() -> int:
        batch = {key: value.to(module.device, non_blocking=True) for key, value in next(batches).items()}
        return train_step(module, optimizer, ColorTargets(**batch))

    return step


def online_eval_step(
    module: ColorizationModule, optimizer: torch.optim.Optimizer, rgb: Tensor, options: Options
) -> Callable[[], int]:
    """(b)'s step followed by the online evaluation's work after a training step, on every layer of the network.

    The config's ``online_eval`` settings (heads' lr, momentum, weight decay) and the callback's own parts: the
    hooks that keep the training forward's features and the heads' SGD step on them.
    """
    settings = load_config(PretrainConfig, overrides=module_overrides(options)).online_eval
    network = module.net
    layers = list(network.feature_layers)
    probes = OnlineProbes(
        feature_shapes(network, layers, options.size),
        options.online_classes,
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
    ).to(options.device)
    tap = FeatureTap(network, layers)
    labels = torch.randint(0, options.online_classes, (options.batch,), device=options.device)

    def step() -> int:
        images = train_step(module, optimizer, module.targets(rgb))
        probes.update(tap.take(), labels)
        return images

    return step


# --- (e) and (f): the linear probe ---------------------------------------------------------------------------------


def probe_rows(options: Options) -> tuple[float, float]:
    """(trunk forward-only, five-layer probe train step) images/s on AlexNet in the standard geometry, zhang16 heads."""
    device, settings = options.device, options.settings
    network = create_model("alexnet", width=options.width, geometry="probe").to(device)
    if settings.channels_last:
        network.to(memory_format=torch.channels_last)
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    lightness = (
        torch.rand(options.batch, 1, options.probe_size, options.probe_size, device=device) * 100
    ).contiguous(memory_format=memory_format)
    labels = torch.randint(0, PROBE_CLASSES, (options.batch,), device=device)
    layers = STANDARD_LAYERS["alexnet"]
    trunk = Trunk(network, layers[-1:])
    backbone = Trunk(network, layers)
    heads = build_heads(backbone, ZHANG16, options.probe_size, PROBE_CLASSES, seed=0)[1].to(device)
    optimizer = torch.optim.SGD(heads.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def forward_only() -> int:
        with autocast(settings):
            trunk(lightness)
        return options.batch

    def probe_step() -> int:
        optimizer.zero_grad(set_to_none=True)
        with autocast(settings):
            features = backbone(lightness)
            loss = sum(F.cross_entropy(heads[layer](features[layer]), labels) for layer in layers)
        loss.backward()
        optimizer.step()
        return options.batch

    return images_per_second(forward_only, options), images_per_second(probe_step, options)


def write_probe_jpegs(root: Path, images: int) -> Path:
    """Two class folders of JPEGs for each split of a probe: ``images`` for training, a few for validation."""
    for split, count in (("train", images), ("val", VAL_IMAGES)):
        for label in ("class_a", "class_b"):
            write_jpegs(root / split, max(1, count // 2), label)
    return root


def probe_end_to_end_rate(options: Options, workdir: Path) -> float:
    """(h): images per second of ``transfer.probe.linear_probe.probe`` on JPEG files, as ``make linear-probe``
    trains (zhang16, conv1..conv5, one validation batch at the end only)."""
    warmup, steps = loader_window(options)
    clock = StepClock(warmup, steps)
    root = write_probe_jpegs(workdir / "probe-data", options.images)
    overrides = [
        "ckpt=random", "model=alexnet", f"model_kwargs.width={options.width}", "layer=all", "protocol=zhang16",
        "data.source=folder", f"data.root={root}", f"data.decode={options.decode}",
        f"data.crop_size={options.probe_size}", f"data.resize={round(options.probe_size * 256 / 227)}",
        f"data.batch_size={options.batch}", f"data.num_workers={options.workers}", "data.index_cache=null",
        f"runs_dir={workdir / 'runs'}", f"results={workdir / 'probe.jsonl'}", "run=bench", "logger.kind=none",
        "trainer.devices=1", "trainer.limit_val_batches=1", "trainer.check_val_every_n_epoch=1000",
        "trainer.checkpoint_every_n_steps=0", "schedule.unit=step", f"schedule.length={warmup + steps + 1}",
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # the probe's own summary: not part of the table
        probe(PROBE.load(None, overrides), extra_callbacks=[clock])
    return clock.rate()


# --- the table -----------------------------------------------------------------------------------------------------


def run(options: Options) -> list[str]:
    """The table of ``options.rows``: the core rows, the presets', or both (each part writes its own JPEGs)."""
    lines: list[str] = []
    if options.rows in ("all", "core"):
        lines += core_rows(options)
    if options.rows in ("all", "presets"):
        lines += preset_rows(options)
    return lines


def core_rows(options: Options) -> list[str]:
    """Rows (a) to (g) at the bench's sizes, their ratios, and the Lab rows."""
    device = options.device
    module, optimizer = build_module(options)
    rates: dict[str, float] = {}
    model_targets = random_targets(options, module.targets.bins.shape[0])
    rates["a"] = images_per_second(lambda: train_step(module, optimizer, model_targets), options)
    rgb = torch.randint(
        0, 256, (options.batch, 3, options.size, options.size), dtype=torch.uint8, device=device
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rates["b"] = images_per_second(lambda: train_step(module, optimizer, module.targets(rgb)), options)
    peak_memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    rates["g"] = images_per_second(online_eval_step(module, optimizer, rgb, options), options)
    # Calls of a few milliseconds: many of them, so that a busy moment of the machine does not decide the order.
    many = dataclasses.replace(options, steps=max(options.steps, MANY_STEPS), warmup=max(options.warmup, 2))
    lab_rates, lab_waits, lab_gap = lab_rows(many)
    rates.update(lab_rates)
    rates.update(crop_rows(many))

    with tempfile.TemporaryDirectory(prefix="bench-jpegs-") as workdir:
        folder = Path(workdir) / "data"
        write_jpegs(folder, options.images)
        write_jpegs(folder, VAL_IMAGES, "val")
        if options.decode == "gpu":
            dataset = EncodedImageFolderDataset(folder, "train")
            batches = loader_for(dataset, options, EncodedCollate())
            cropper = DeviceCropper(options.size)
        else:
            dataset = ImageFolderDataset(folder, "train", crop_size=options.size)
            batches = loader_for(dataset, options, SkipUnreadableCollate(options.size))
            cropper = None
        rates["c0"] = images_per_second(
            end_to_end_step(module, optimizer, batches, cropper), options, loader=True
        )
        del batches  # stops its workers, which would otherwise go on reading files about to be deleted
        rates["c"], host_waits = lightning_loop_rate(options, folder, Path(workdir))
        rates["h"] = probe_end_to_end_rate(options, Path(workdir))
        class_weights = rebalance_weights(uniform_prior(), 0.5)
        original = OriginalPipelineDataset(
            ImageFolderDataset(folder, "train", crop_size=options.size), ab_bins(), class_weights, stride=4
        )
        batches = loader_for(original, options, None)
        rates["d"] = images_per_second(original_step(module, optimizer, batches), options, loader=True)
        del batches
    rates["e"], rates["f"] = probe_rows(options)

    flops = flops_per_image(options)
    peak, peak_note = peak_flops(device)
    lines = format_table(options, rates, flops, peak, peak_note, peak_memory, host_waits)
    return lines + format_lab(options, rates, lab_waits, lab_gap)


def preset_rows(options: Options) -> list[str]:
    """The presets users run beside their model-only steps, and eccv16's with the data path in series."""
    rates: dict[str, float] = {}
    presets: list[tuple[PresetRow, PresetLoop]] = []
    with tempfile.TemporaryDirectory(prefix="bench-presets-") as workdir:
        folder = Path(workdir) / "data"
        folder.mkdir()
        rows = [preset_row(options, key, preset, folder) for key, preset in PRESET_ROWS]
        images = max(row.images_needed(options) for row in rows)
        # The online heads as wide as ImageNet's (--online-classes, 1000) where the epoch has that many images.
        classes = min(options.online_classes, images)
        write_jpegs(folder, images, classes=classes)
        write_jpegs(folder, classes, "val", classes=classes)
        for row in rows:
            rates[f"a-{row.model}"] = preset_model_rate(options, row, folder)
            loop = preset_loop(options, row, folder, Path(workdir))
            rates[row.key] = loop.rate
            presets.append((row, loop))
        # The eccv16 loop again with data.decode_ahead the other way round from its preset's (on for CUDA):
        # what preparing the next batch while the step runs gains over doing it in series.
        shipped_ahead = options.device.type == "cuda"
        rates[f"c-eccv16-ahead-{shipped_ahead}"] = rates["c-eccv16"]
        flipped = not shipped_ahead
        rates[f"c-eccv16-ahead-{flipped}"] = preset_loop(
            options, rows[0], folder, Path(workdir), flipped
        ).rate
    return format_presets(options, rates, presets, images, classes)


def format_table(
    options: Options,
    rates: dict[str, float],
    flops: float,
    peak: float,
    peak_note: str,
    peak_memory: int | None,
    host_waits: Counter[str] | None = None,
) -> list[str]:
    settings = options.settings
    name = (
        torch.cuda.get_device_name(options.device)
        if options.device.type == "cuda"
        else platform.processor() or "cpu"
    )
    if options.decode == "cpu":
        decode = "PIL in workers"
    else:
        decode = "nvJPEG on the device" if options.device.type == "cuda" else "device path, CPU decoder"
    rows = [
        ("a", "model train step (random L and targets)", True),
        ("b", "pretraining step from uint8 on the device", True),
        ("c", f"end to end, pretrain()'s Lightning loop, {decode}", True),
        ("c0", "same data path, bare loop (no Lightning)", True),
        ("d", f"original pipeline: skimage + sklearn in {options.workers} workers", True),
        ("e", "probe: AlexNet trunk forward only (to conv5)", False),
        ("f", "probe: trunk + conv1..conv5 heads, train step", False),
        ("g", f"(b) + online eval: {options.online_classes}-way heads on conv1..conv8", True),
        ("h", f"probe end to end: probe() on JPEGs, conv1..conv5, {decode}", False),
    ]
    width = max(len(label) for _, label, _ in rows)

    def mfu(rate: float) -> str:
        return f"{100 * rate * flops / peak:6.1f}%" if peak else "   n/a"

    lines = [
        f"lit-colorization throughput  {datetime.date.today().isoformat()}  torch {torch.__version__}  device {name}",
        f"eccv16 width {options.width:g}, {options.size}x{options.size} crops, batch {options.batch}, "
        f"{options.steps} timed steps after {options.warmup} ((c), (c0), (d): at least {2 * options.workers} "
        f"after {options.workers}, {options.workers} workers, {options.images} JPEG files), "
        f"{options.threads} torch threads",
        f"precision {settings.precision}, channels_last {settings.channels_last}, compile {settings.compile}, "
        f"fused Adam {settings.fused_adam}, TF32 {settings.tf32}; "
        f"probe {options.probe_size}x{options.probe_size}, AlexNet width {options.width:g}",
        f"{'row':<{width + 5}} {'images/s':>10} {'MFU':>7}",
    ]
    for key, label, counts_flops in rows:
        mfu_text = mfu(rates[key]) if counts_flops else ""
        lines.append(f"{f'({key})':<4} {label:<{width}} {rates[key]:>10,.1f} {mfu_text:>7}")
    targets = {"b/a": ">= 0.9", "c/a": "", "c/d": ">= 2", "f/e": ">= 0.8"}
    for ratio, target in targets.items():
        top, bottom = ratio.split("/")
        note = f"   (GPU target {target})" if target else ""
        lines.append(f"({top})/({bottom}) = {rates[top] / rates[bottom]:.2f}{note}")
    lines.append(f"(c)/(c0) = {rates['c'] / rates['c0']:.2f}   (Lightning loop overhead; no target)")
    lines.append(
        f"step time with online eval / without, (b)/(g) = {rates['b'] / rates['g']:.3f}   (GPU target <= 1.05)"
    )
    _, timed = loader_window(options)
    if host_waits is None:
        lines.append("host waits for the device in (c): n/a (CPU)")
    else:
        lines.append(
            f"host waits for the device in (c): {host_waits.total()} in {timed} timed steps (expected: one per "
            f"progress-bar update, every {CUDA_PROGRESS_BAR_STEPS} steps by default)"
        )
        lines += [f"  {count:5d} at {place}" for place, count in host_waits.most_common(8)]
    lines.append(f"FLOPs per image per train step: {flops / 1e9:.2f} GFLOP (FlopCounterMode)")
    lines.append(f"MFU: {peak_note}")
    memory = f"{peak_memory / 2**30:.2f} GiB" if peak_memory is not None else "n/a (CPU)"
    lines.append(f"peak device memory of (b): {memory}")
    return lines


def format_presets(
    options: Options,
    rates: dict[str, float],
    presets: list[tuple[PresetRow, PresetLoop]],
    images: int,
    classes: int,
) -> list[str]:
    """The presets as users run them, each beside its network's model-only step at the same batch."""
    warmup, steps = loader_window(options)
    shipped = "as shipped" if options.device.type == "cuda" else "at this CPU's sizes"
    lines = [
        f"presets {shipped}, make pretrain's Lightning loop: {steps} timed steps after {warmup}, {images} training "
        f"JPEGs in {classes} classes (no epoch ends inside the fit), validation off, online evaluation "
        f"({classes}-way heads) and checkpoint writer as the preset has them"
    ]
    for row, loop in presets:
        model_key = f"a-{row.model}"
        cadence = (
            f"every {row.checkpoint_every_minutes:g} min"
            if row.checkpoint_every_minutes > 0
            else f"every {row.checkpoint_every_n_steps} steps"
        )
        model_label = f"({model_key}) {row.model} model step, batch {row.batch}, {row.crop}x{row.crop}"
        loop_label = f"({row.key}) {row.preset} end to end, batch {row.batch}, {row.crop}x{row.crop}"
        lines.append(f"{model_label:<64} {rates[model_key]:>10,.1f}")
        lines.append(f"{loop_label:<64} {loop.rate:>10,.1f}")
        lines.append(
            f"({row.key})/({model_key}) = {loop.rate / rates[model_key]:.2f}   (GPU target: {PRESET_TARGETS[row.key]})"
        )
        lines.append(
            f"  checkpoint: {loop.checkpoint_seconds:.2f} s of the step's time per write, {cadence}: "
            f"{100 * loop.checkpoint_share:.2f}% of the run"
        )
        if loop.host_waits is not None:
            lines.append(f"  host waits in the timed steps: {loop.host_waits.total()}")
            lines += [f"    {count:5d} at {place}" for place, count in loop.host_waits.most_common(5)]
    ahead, plain = rates["c-eccv16-ahead-True"], rates["c-eccv16-ahead-False"]
    lines.append(
        f"(c-eccv16) with data.decode_ahead=false {plain:,.1f}, =true {ahead:,.1f} images/s: ahead / in series = "
        f"{ahead / plain:.2f}"
    )
    lines.append(
        "(h) probe end to end (zhang16 conv1..conv5, JPEGs decoded on the device): not measured here; the probe's "
        "device decode is issue 23's (GPU target >= 8,000 images/s)"
    )
    return lines


def format_lab(
    options: Options, rates: dict[str, float], waits: dict[str, int | None], gap: float
) -> list[str]:
    labels = {
        "l": "sRGB -> Lab, library: kornia, constants kept on the device",
        "l0": "sRGB -> Lab, the hand-written conversion it replaced",
        "lk": "sRGB -> Lab, kornia.color.rgb_to_lab as it is",
    }
    lines = [f"sRGB -> Lab on {options.batch} x 3 x {options.size} x {options.size} float32 (images/s):"]
    for key, label in labels.items():
        wait = "n/a (CPU)" if waits[key] is None else str(waits[key])
        lines.append(f"({key:<2}) {label:<58} {rates[key]:>10,.1f}   host waits per call: {wait}")
    lines.append(f"(l)/(l0) = {rates['l'] / rates['l0']:.2f}; max |(l) - (l0)| = {gap:.1e} Lab units")
    lines.append(
        f"resize-and-crop on the device, {options.batch} photos of {JPEG_SIZE[0]}x{JPEG_SIZE[1]} squashed to 256, "
        f"{options.size}x{options.size} crops (images/s):"
    )
    lines.append(f"(k ) {'one pass (data/encoded.py resized_crops)':<58} {rates['k']:>10,.1f}")
    lines.append(f"(k0) {'tap by tap, as before it':<58} {rates['k0']:>10,.1f}")
    lines.append(f"(k)/(k0) = {rates['k'] / rates['k0']:.2f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    torch.set_num_threads(options.threads)
    for line in run(options):
        print(line, flush=True)


if __name__ == "__main__":
    main()
