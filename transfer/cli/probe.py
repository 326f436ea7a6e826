"""Linear probes on frozen features: ``python -m transfer.cli.probe [--preset NAME] key=value ...``.

Trains one linear head per layer of a pretraining checkpoint's frozen trunk (``layer=all``: every standard
layer in one pass over the data), then appends one row per layer to the results store (``results``, default
``results/transfer.jsonl``) and writes ``runs/probe-<run>/``: ``config.yaml``, metrics (CSV or W&B) and
``results.json`` (this run's rows; a finished run is never overwritten).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import OmegaConf

from lit_colorization.cli.common import run_preset_command
from lit_colorization.config.loading import to_container
from lit_colorization.data import build_datamodule
from lit_colorization.store.atomic import write_text
from lit_colorization.store.loggers import build_logger
from lit_colorization.store.results import SCHEMA
from transfer.probe.config import PROBE, ProbeConfig, check_class_count
from transfer.probe.module import LinearProbeModule, resolve_layers
from transfer.runs import build_transfer_trainer, publish, resolve_ckpt, run_directory
from transfer.trunk import BackboneSource, Trunk, load_network

TASK = "linear-probe"
RESULT_COLUMNS = ("layer", "feature_dim", "top1", "top5")
log = logging.getLogger(__name__)


def dataset_name(data: Any) -> str:
    return str(Path(data.root).resolve()) if data.source == "folder" else data.source


def probe_run_directory(config: ProbeConfig, source: BackboneSource, layers: list[str]) -> Path:
    """``<runs_dir>/probe-<run>``; the default name joins the pretraining run and the layers."""
    layer_label = config.layer.strip() if config.layer.strip() == "all" else "+".join(layers)
    return run_directory(config.runs_dir, "probe", config.run or f"{source.pretrain_run}-{layer_label}")


def result_rows(
    config: ProbeConfig,
    source: BackboneSource,
    module: LinearProbeModule,
    metrics: dict[str, float],
    epochs: int,
    num_classes: int,
    run_name: str,
) -> list[dict[str, Any]]:
    """One results-store row per probed layer; accuracies in percent (results store schema ``SCHEMA``)."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return [
        {
            "task": TASK,
            "schema": SCHEMA,
            "time": now,
            "run": run_name,
            "ckpt": source.ckpt,
            "pretrain_run": source.pretrain_run,
            "pretrain_step": source.pretrain_step,
            "model": source.model_name,
            "layer": layer,
            "feature_dim": dim,
            "dataset": dataset_name(config.data),
            "num_classes": num_classes,
            "epochs": epochs,
            "top1": round(float(metrics[f"probe/{layer}/top1"]), 4),
            "top5": round(float(metrics[f"probe/{layer}/top5"]), 4),
            "top5_k": module.top_k,
            "seed": config.trainer.seed,
        }
        for layer, dim in module.feature_dims.items()
    ]


def build_trainer(config: ProbeConfig, run_dir: Path, logger: Any) -> L.Trainer:
    trainer = config.trainer
    return build_transfer_trainer(
        trainer,
        run_dir,
        logger,
        lr_logging_interval="epoch",
        max_epochs=trainer.max_epochs,
        check_val_every_n_epoch=trainer.check_val_every_n_epoch,
        limit_train_batches=trainer.limit_train_batches,
        limit_val_batches=trainer.limit_val_batches,
    )


def probe(config: ProbeConfig) -> list[dict[str, Any]]:
    """Run the linear probe ``config`` describes; returns the rows appended to the results store."""
    ckpt = resolve_ckpt(config.ckpt, config.runs_dir)
    network, source = load_network(ckpt, config.model, dict(config.model_kwargs), seed=config.trainer.seed)
    layers = resolve_layers(config.layer, source.model_name)
    run_dir = probe_run_directory(config, source, layers)
    L.seed_everything(config.trainer.seed, workers=True)
    backbone = Trunk(network, layers)
    datamodule = build_datamodule(config.data)
    datamodule.setup("fit")
    check_class_count(config, datamodule.classes)
    module = LinearProbeModule(
        backbone, datamodule.num_classes, config.optim, config.data.batch_size, seed=config.trainer.seed
    )
    resolved = {
        **to_container(config),
        "ckpt": source.ckpt,
        "model": source.model_name,
        "layer": ",".join(layers),
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
    trainer = build_trainer(config, run_dir, logger)
    trainer.fit(module, datamodule=datamodule)
    final = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    rows = result_rows(
        config, source, module, final, trainer.current_epoch, datamodule.num_classes, run_dir.name
    )
    publish(config.results, rows, run_dir)
    if trainer.is_global_zero:
        if isinstance(logger, WandbLogger):
            logger.log_table(
                key="probe/results",
                columns=list(RESULT_COLUMNS),
                data=[[row[c] for c in RESULT_COLUMNS] for row in rows],
            )
        print_summary(rows, config.results, run_dir)
    return rows


def print_summary(rows: list[dict[str, Any]], results_path: str, run_dir: Path) -> None:
    k = rows[0]["top5_k"]
    print(f"linear probe of {rows[0]['pretrain_run']} ({rows[0]['model']}), {rows[0]['epochs']} epochs:")
    for row in rows:
        print(
            f"  {row['layer']:>6}  dim {row['feature_dim']:>6}  top-1 {row['top1']:6.2f}%  top-{k} {row['top5']:6.2f}%"
        )
    print(f"appended {len(rows)} rows to {results_path}; run folder: {run_dir}")


def main(argv: list[str] | None = None) -> None:
    run_preset_command(
        "Per-layer linear probes on frozen colorization features",
        "configs/presets/probe/<name>.yaml",
        lambda preset, overrides: probe(PROBE.load(preset, overrides)),
        argv,
    )


if __name__ == "__main__":
    main()
