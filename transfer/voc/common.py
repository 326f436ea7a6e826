"""What the VOC command lines share: the start of a run, data loaders, the Lightning trainer and result rows.

A run writes ``<runs_dir>/<task>-<run>/``: ``config.yaml`` (resolved), metrics (CSV or W&B), ``checkpoints/last.ckpt``
(a fine-tuning's, for ``resume=auto``: docs/resuming.md), ``results.json`` (this run's rows, also appended to the
results store; a finished run is never overwritten) and ``test_predictions.npz`` (what the final evaluation scored:
``save_test_predictions``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2.functional import center_crop, resize

from lit_colorization.color import uint8_to_lab
from lit_colorization.config.loading import to_container
from lit_colorization.data.datamodule import evenly_spaced_indices
from lit_colorization.data.resumable import ResumableTrainData, resumable_train_data
from lit_colorization.models import ColorizationNet
from lit_colorization.models.data_init import InitReport, between_layer_rescale_
from lit_colorization.runtime.resumption import fit_resumable
from lit_colorization.store.atomic import atomic_open, write_text
from lit_colorization.store.loggers import build_logger
from lit_colorization.store.results import PERCENT, SCHEMA, publish_results
from transfer.runs import build_transfer_trainer, hold_run, resolve_ckpt, run_directory, start_resumable
from transfer.trunk import BackboneSource, load_network
from transfer.voc.sources import VOCSource, resolve_voc_source
from transfer.voc.voc_config import VOCClsConfig, VOCDetConfig, VOCSegConfig

VOCRunConfig = VOCClsConfig | VOCDetConfig | VOCSegConfig

# Percent to 4 decimals: the 6 decimals of a fraction that the store kept before its schema 2.
PERCENT_DECIMALS = 4


log = logging.getLogger(__name__)
RESCALE_IMAGES = 32
TEST_PREDICTIONS = "test_predictions.npz"
RESCALE_SIDE = 224


def rescale_trunk_(network: ColorizationNet, train: Dataset, seed: int) -> InitReport:
    """Kraehenbuehl's between-layer rescaling of ``network`` (in place) on ``RESCALE_IMAGES`` training images,
    evenly spread over ``train`` (items whose first element is a uint8 3 x H x W image), each resized and centre
    cropped to ``RESCALE_SIDE``."""
    positions = evenly_spaced_indices(len(train), min(RESCALE_IMAGES, len(train)))
    crops = [
        center_crop(resize(train[position][0], RESCALE_SIDE, antialias=True), RESCALE_SIDE)
        for position in positions
    ]
    device = next(network.parameters()).device
    lightness = uint8_to_lab(torch.stack(crops).to(device))[:, :1]
    report = between_layer_rescale_(network, lightness, seed=seed)
    log.info(
        "rescaled the pretrained trunk on %d training images: gradient/weight ratio spread %.3g -> %.3g",
        len(crops),
        report.ratio_spread_before,
        report.ratio_spread_after,
    )
    return report


def load_trunk(
    config: VOCRunConfig,
    resolve: Callable[[Any], VOCSource] = resolve_voc_source,
    standard_geometry: bool = False,
) -> tuple[ColorizationNet, BackboneSource, VOCSource]:
    """Seed everything, then load the pretrained network (``ckpt``, else the latest; ``standard_geometry`` as
    ``transfer.trunk.load_network`` takes it) and find the VOC data (``resolve`` maps the config's data section
    to it)."""
    seed = config.trainer.seed
    L.seed_everything(seed, workers=True)
    ckpt = resolve_ckpt(config.ckpt, config.runs_dir)
    network, source = load_network(
        ckpt, config.model, dict(config.model_kwargs), seed=seed, standard_geometry=standard_geometry
    )
    return network, source, resolve(config.data)


@dataclass(frozen=True)
class StartedRun:
    """A VOC run's claimed folder, its logger and the checkpoint it continues from (None: a fresh start)."""

    run_dir: Path
    logger: Logger | bool
    resume: str | None


@contextlib.contextmanager
def started_run(
    config: VOCRunConfig,
    task: str,
    default_name: str,
    source: BackboneSource,
    voc: VOCSource,
    **resolved_sections: Any,
) -> Iterator[StartedRun]:
    """Hold ``<runs_dir>/<task>-<run or default_name>`` (its lock, for the block), find the checkpoint a
    ``resume`` continues, write its resolved ``config.yaml`` (``resolved_sections`` replace the config's own) and
    open its logger."""
    run_dir = run_directory(config.runs_dir, task, config.run or default_name)
    with hold_run(run_dir):
        resume = start_resumable(run_dir, config.resume)
        logger = open_run(config, task, run_dir, source, voc, resolved_sections)
        yield StartedRun(run_dir, logger, resume)


def open_run(
    config: VOCRunConfig,
    task: str,
    run_dir: Path,
    source: BackboneSource,
    voc: VOCSource,
    resolved_sections: dict[str, Any],
) -> Logger | bool:
    """Write ``run_dir``'s resolved ``config.yaml`` and open its logger."""
    resolved = {
        **to_container(config),
        "ckpt": source.ckpt,
        "model": source.model_name,
        "dataset": voc.label,  # as the rows name it; W&B filters VOC runs on it (transfer/dashboard.py)
        "data_root": str(voc.root),
        **resolved_sections,
    }
    if rank_zero_only.rank == 0:
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    return build_logger(
        config.logger, run_dir, run_dir.name, job_type=task, config=resolved, group=source.pretrain_run
    )


def train_data(
    train: Dataset,
    config: VOCRunConfig,
    batch_size: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    periodic: DataLoader | None = None,
) -> ResumableTrainData:
    """The training data of a VOC fine-tuning, resumable exactly (``lit_colorization/data/resumable.py``), with
    ``periodic`` for the evaluations inside the fit (``trainer.val_check_interval``) if given."""
    return resumable_train_data(
        train,
        config.trainer.seed,
        batch_size,
        config.data.num_workers,
        collate_fn=collate_fn,
        val_loader=periodic,
    )


def data_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    shuffle: bool,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader:
    # A partial last training batch is dropped so BatchNorm never sees a batch of one image.
    drop_last = shuffle and len(dataset) > batch_size  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        collate_fn=collate_fn,
    )


def build_trainer(
    trainer: Any, run_dir: Path, logger: Logger | bool, accumulate_grad_batches: int = 1
) -> L.Trainer:
    """The Lightning trainer of a ``VOCTrainerConfig``; no checkpoints (the results are the product).
    ``accumulate_grad_batches`` batches make one optimizer step (Caffe's ``iter_size``)."""
    periodic_validation = trainer.val_check_interval is not None
    return build_transfer_trainer(
        trainer,
        run_dir,
        logger,
        lr_logging_interval="step",
        max_steps=trainer.max_steps,
        max_epochs=trainer.max_epochs,
        # An int interval counts optimizer steps across epochs only with check_val_every_n_epoch=None.
        val_check_interval=trainer.val_check_interval if periodic_validation else None,
        check_val_every_n_epoch=None if periodic_validation else 1,
        num_sanity_val_steps=0,
        accumulate_grad_batches=accumulate_grad_batches,
    )


def feature_device(accelerator: str) -> torch.device:
    """The device of a single-process job (the SVM protocol) for ``trainer.accelerator``."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator in ("gpu", "cuda"):
        raise ValueError(
            f"config key 'trainer.accelerator': {accelerator!r} asked for, but CUDA is not available"
        )
    return torch.device("cpu")


def percent(fraction: float) -> float:
    """An AP or mAP in [0, 1] as the results store keeps it: in percent, rounded."""
    return round(PERCENT * float(fraction), PERCENT_DECIMALS)


def per_class_ap(classes: Sequence[str], values: Sequence[float]) -> dict[str, float | None]:
    """Class name -> AP (or another per-class rate, e.g. IoU) in percent for the results store; None where the
    rate is undefined (NaN: a class without a positive test image, or neither present nor predicted)."""
    return {
        name: None if math.isnan(value) else percent(value)
        for name, value in zip(classes, values, strict=True)
    }


def base_row(
    config: VOCRunConfig, task: str, run_dir: Path, source: BackboneSource, voc: VOCSource
) -> dict[str, Any]:
    """The fields every VOC result row carries, before the task's own."""
    return {
        "task": task,
        "schema": SCHEMA,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": run_dir.name,
        "ckpt": source.ckpt,
        "pretrain_run": source.pretrain_run,
        "pretrain_step": source.pretrain_step,
        "model": source.model_name,
        "dataset": voc.label,
        "data_root": str(voc.root),
        "classes": list(voc.classes),
        "seed": config.trainer.seed,
        "rescaled": config.rescale,
    }


def log_per_class(
    logger: Logger | bool, classes: Sequence[str], values: Sequence[float], step: int, metric: str = "ap"
) -> None:
    """Per-class ``voc/<metric>/<class>`` in [0, 1], like the ``voc/map`` the modules log; undefined (NaN)
    values, e.g. of classes without a positive image, left out."""
    if logger:
        logger.log_metrics(
            {
                f"voc/{metric}/{name}": float(value)
                for name, value in zip(classes, values, strict=True)
                if not math.isnan(value)
            },
            step=step,
        )
        logger.save()


def fit_and_score(
    config: VOCRunConfig,
    run: StartedRun,
    module: L.LightningModule,
    train: Dataset,
    test_loader: DataLoader,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    accumulate_grad_batches: int = 1,
) -> tuple[Any, L.Trainer]:
    """Fine-tune ``module`` on ``train`` (continuing the run's checkpoint if it has one), score ``test_loader``
    and keep what it scored (``test_predictions.npz``); (the module's result, the trainer)."""
    trainer = build_trainer(config.trainer, run.run_dir, run.logger, accumulate_grad_batches)
    periodic = test_loader if config.trainer.val_check_interval is not None else None
    training = train_data(train, config, config.data.batch_size, collate_fn=collate_fn, periodic=periodic)
    fit_resumable(trainer, module, run.resume, datamodule=training)
    module.start_recording()
    trainer.validate(module, dataloaders=test_loader, verbose=False)
    save_test_predictions(run.run_dir, module.recorded_arrays(), trainer.global_rank, trainer.world_size)
    return module.last_result, trainer


def save_test_predictions(run_dir: Path, arrays: dict[str, Any], rank: int = 0, world_size: int = 1) -> Path:
    """What the final evaluation scored (``arrays``: numpy arrays by name), compressed, as
    ``<run_dir>/test_predictions.npz`` (one file per process under DDP: ``test_predictions.rank<r>.npz``, each
    its own shard), so the reported number can be recomputed from the run folder alone."""
    name = TEST_PREDICTIONS if world_size == 1 else f"test_predictions.rank{rank}.npz"
    with atomic_open(run_dir / name, "wb") as stream:
        np.savez_compressed(stream, **arrays)
    return run_dir / name


def publish_and_print(
    rows: list[dict[str, Any]], run_dir: Path, results: str, headline: str, lines: Sequence[str]
) -> None:
    """The tail of every VOC command (rank 0): the run's results.json, then the shared store (a failed append is
    a warning), then ``headline`` and ``lines`` with where the rows went."""
    if rank_zero_only.rank != 0:
        return
    stored = publish_results(rows, run_dir / "results.json", results)
    print(headline)
    for line in lines:
        print(f"  {line}")
    where = f"appended {len(rows)} row(s) to {results}" if stored else "rows in results.json only"
    print(f"  {where}; run folder: {run_dir}")
