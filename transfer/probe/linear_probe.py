"""Linear probes on frozen features (the library behind ``python -m transfer.cli.probe``).

Trains one linear head per layer of a pretraining checkpoint's frozen trunk (``layer=all``: every standard
layer in one pass over the data) under a named protocol (``protocol=zhang16|goyal19``; an AlexNet is probed in the
standard geometry both assume), then appends one row per layer to the results store (``results``, default
``results/transfer.jsonl``) and writes ``runs/probe-<run>/``: ``config.yaml`` (with the optimiser and schedule
the run used), metrics (CSV or W&B), ``checkpoints/last.ckpt`` (for ``resume=auto``: docs/resuming.md),
``results.json`` (this run's rows; a finished run is never overwritten) and ``val_predictions.npz`` (the final
validation's labels and each layer's top-5 classes, to recount the accuracies).
Each row carries its ``protocol`` (``<name>-like`` for a layer the protocol does not define), the layer's
``feature_shape`` (C, H, W) before the reduction, the ``pooled_shape`` and ``feature_dim`` after it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import OmegaConf

from lit_colorization.config.loading import to_container
from lit_colorization.data import build_datamodule
from lit_colorization.data.crops import resize_rule
from lit_colorization.data.datamodule import ColorizationDataModule
from lit_colorization.data.encoded import DeviceCropper
from lit_colorization.runtime.resumption import fit_resumable
from lit_colorization.store.atomic import atomic_open, write_text
from lit_colorization.store.loggers import build_logger
from lit_colorization.store.results import SCHEMA, publish_results
from transfer.probe.module import LinearProbeModule, resolve_layers
from transfer.probe.probe_config import (
    ProbeConfig,
    check_class_count,
    dataset_name,
    probe_optimizer,
    probe_schedule,
)
from transfer.probe.protocols import EPOCH, ProbeOptimizer, ProbeSchedule, get_protocol
from transfer.runs import build_transfer_trainer, hold_run, resolve_ckpt, run_directory, start_resumable
from transfer.trunk import BackboneSource, Trunk, load_network

TASK = "linear-probe"
RESULT_COLUMNS = ("layer", "protocol", "feature_dim", "top1", "top5")
PREDICTIONS_FILE = "val_predictions.npz"
log = logging.getLogger(__name__)


def probe_run_directory(config: ProbeConfig, source: BackboneSource, layers: list[str]) -> Path:
    """``<runs_dir>/probe-<run>``; the default name joins the pretraining run and the layers."""
    layer_label = config.layer.strip() if config.layer.strip() == "all" else "+".join(layers)
    return run_directory(config.runs_dir, "probe", config.run or f"{source.pretrain_run}-{layer_label}")


def result_rows(
    config: ProbeConfig,
    source: BackboneSource,
    module: LinearProbeModule,
    metrics: dict[str, float],
    trainer: L.Trainer,
    num_classes: int,
    run_name: str,
    val_images: int,
) -> list[dict[str, Any]]:
    """One results-store row per probed layer; accuracies in percent (results store schema ``SCHEMA``)."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = []
    for layer, head in module.heads.items():
        probe = module.layer_probes[layer]
        row = {
            "task": TASK,
            "schema": SCHEMA,
            "time": now,
            "run": run_name,
            "ckpt": source.ckpt,
            "pretrain_run": source.pretrain_run,
            "pretrain_step": source.pretrain_step,
            "model": source.model_name,
            "layer": layer,
            "protocol": probe.label,
            "reduction": probe.reduction.describe(),
            "feature_shape": list(head.feature_shape),
            "pooled_shape": list(head.pooled_shape),
            "feature_dim": head.feature_dim,
            "crop_size": config.data.crop_size,
            "resize": {"side": config.data.resize, "mode": config.data.resize_mode}
            if config.data.resize
            else None,
            "dataset": dataset_name(config),
            "data_root": str(Path(config.data.root).resolve()) if config.data.source == "folder" else None,
            "num_classes": num_classes,
            "val_images": val_images,  # what a top-1's confidence interval needs (make compare shows it)
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "top1": round(float(metrics[f"probe/{layer}/top1"]), 4),
            "top5": round(float(metrics[f"probe/{layer}/top5"]), 4),
            "top5_k": module.top_k,
            "seed": config.trainer.seed,
        }
        rows.append(row)
    return rows


def device_cropper(data: Any) -> DeviceCropper | None:
    """The device's decoder and cropper for ``data.decode=gpu`` (nvJPEG on CUDA), None for the CPU path."""
    return DeviceCropper(data.crop_size, resize_rule(data), data.strict) if data.decode == "gpu" else None


def build_trainer(
    config: ProbeConfig,
    schedule: ProbeSchedule,
    run_dir: Path,
    logger: Any,
    extra_callbacks: Sequence[Callback] = (),
) -> L.Trainer:
    trainer = config.trainer
    in_epochs = schedule.unit == EPOCH
    return build_transfer_trainer(
        trainer,
        run_dir,
        logger,
        lr_logging_interval=schedule.unit,
        extra_callbacks=extra_callbacks,
        max_epochs=schedule.length if in_epochs else -1,
        max_steps=-1 if in_epochs else schedule.length,
        check_val_every_n_epoch=trainer.check_val_every_n_epoch,
        limit_train_batches=trainer.limit_train_batches,
        limit_val_batches=trainer.limit_val_batches,
    )


def probe(config: ProbeConfig, extra_callbacks: Sequence[Callback] = ()) -> list[dict[str, Any]]:
    """Run the linear probe ``config`` describes; returns the rows appended to the results store.
    ``extra_callbacks`` join the Trainer's own.

    ``checkpoints/last.ckpt`` (the heads, their optimizer and the trunk's checksum) is written every
    ``trainer.checkpoint_every_n_steps`` steps and on SIGTERM/SIGUSR1 (exit status 75); ``resume=auto`` continues
    with the same batches, crops and final numbers as a run that was never stopped.
    """
    ckpt = resolve_ckpt(config.ckpt, config.runs_dir)
    network, source = load_network(
        ckpt, config.model, dict(config.model_kwargs), seed=config.trainer.seed, standard_geometry=True
    )
    layers = resolve_layers(config.layer, source.model_name)
    settings = probe_optimizer(config, source.model_name), probe_schedule(config)
    run_dir = probe_run_directory(config, source, layers)
    datamodule = build_datamodule(config.data)
    datamodule.setup("fit")
    check_class_count(config, datamodule.classes)  # before the run folder is made
    with hold_run(run_dir):
        return probe_in(run_dir, config, network, source, layers, settings, datamodule, extra_callbacks)


def probe_in(
    run_dir: Path,
    config: ProbeConfig,
    network: Any,
    source: BackboneSource,
    layers: list[str],
    settings: tuple[ProbeOptimizer, ProbeSchedule],
    datamodule: ColorizationDataModule,
    extra_callbacks: Sequence[Callback],
) -> list[dict[str, Any]]:
    """The probe in its claimed run folder, with its resolved optimizer and schedule ``settings``."""
    optimizer, schedule = settings
    resume = start_resumable(run_dir, config.resume)
    L.seed_everything(config.trainer.seed, workers=True)
    backbone = Trunk(network, layers)
    module = LinearProbeModule(
        backbone,
        datamodule.num_classes,
        get_protocol(config.protocol),
        config.data.crop_size,
        optimizer,
        schedule,
        config.data.batch_size,
        seed=config.trainer.seed,
        device_cropper=device_cropper(config.data),
    )
    resolved = {
        **to_container(config),
        "ckpt": source.ckpt,
        "model": source.model_name,
        "dataset": dataset_name(config),  # W&B filters probe runs on it (transfer/dashboard.py)
        "layer": ",".join(layers),
        "optim": asdict(optimizer),
        "schedule": {**asdict(schedule), "milestones": list(schedule.milestones)},
    }
    if rank_zero_only.rank == 0:
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    log.info("probing %s %s layers %s from %s", source.model_name, source.pretrain_run, layers, source.ckpt)
    logger_config = {
        **resolved,
        "pretrain": {"ckpt": source.ckpt, "run": source.pretrain_run, "step": source.pretrain_step},
    }
    logger = build_logger(
        config.logger, run_dir, run_dir.name, job_type=TASK, config=logger_config, group=source.pretrain_run
    )
    trainer = build_trainer(config, schedule, run_dir, logger, extra_callbacks)
    fit_resumable(trainer, module, resume, datamodule=datamodule)
    final = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    save_predictions(module, run_dir, trainer.global_rank, trainer.world_size)
    rows = result_rows(
        config,
        source,
        module,
        final,
        trainer,
        datamodule.num_classes,
        run_dir.name,
        len(datamodule.val_dataloader().dataset),
    )
    if trainer.is_global_zero:
        stored = publish_results(rows, run_dir / "results.json", config.results)
        if isinstance(logger, WandbLogger):
            logger.log_table(
                key="probe/results",
                columns=list(RESULT_COLUMNS),
                data=[[row[c] for c in RESULT_COLUMNS] for row in rows],
            )
        print_summary(rows, config.results if stored else None, run_dir)
    return rows


def save_predictions(module: LinearProbeModule, run_dir: Path, rank: int, world_size: int) -> Path | None:
    """The final validation's labels and each head's ranked classes as ``<run_dir>/val_predictions.npz`` (one
    file per process under DDP: ``val_predictions.rank<r>.npz``, each its own validation shard), so the reported
    top-1 and top-5 can be recounted from the run folder alone; None when the validation saw no image."""
    predictions = module.validation_predictions()
    if not predictions:
        return None
    name = PREDICTIONS_FILE if world_size == 1 else f"val_predictions.rank{rank}.npz"
    path = run_dir / name
    with atomic_open(path, "wb") as stream:
        np.savez(stream, **predictions)
    return path


def print_summary(rows: list[dict[str, Any]], results_path: str | None, run_dir: Path) -> None:
    """The accuracies, and where the rows went (``results_path`` None: the run folder's results.json only)."""
    k, first = rows[0]["top5_k"], rows[0]
    print(
        f"linear probe of {first['pretrain_run']} ({first['model']}), {first['steps']} steps "
        f"({first['epochs']} epochs):"
    )
    for row in rows:
        shape = "x".join(map(str, row["feature_shape"]))
        print(
            f"  {row['layer']:>6}  {row['protocol']:<12}  {shape:>12} -> dim {row['feature_dim']:>6}  "
            f"top-1 {row['top1']:6.2f}%  top-{k} {row['top5']:6.2f}%"
        )
    stored = f"appended {len(rows)} rows to {results_path}" if results_path else "rows in results.json only"
    print(f"{stored}; run folder: {run_dir}")
