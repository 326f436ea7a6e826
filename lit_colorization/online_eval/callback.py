"""Transfer quality watched while pretraining: per-layer online linear probes and kNN on the trunk's features.

``OnlineEvaluation`` is a Lightning callback of the pretraining run (``online_eval`` in the config; on by
default, ``online_eval.enabled=false`` turns it off). It needs labelled data: ImageNet's class folders, the
embedded photos (one class per photo), the synthetic hues.

- Online probes (``online/<layer>/top1``): after every training step, one SGD step of a linear head per layer
  on that step's features and labels. The features come from ``FeatureTap``'s hooks on the training forward
  pass, detached: no extra forward, no gradient into the colorizer, no change to its BatchNorm statistics.
  They are the train-mode features of the batch (BatchNorm on batch statistics), as any online probe sees
  them; validation scores the heads on the eval-mode features of the validation crops. Heads that have not
  trained yet (the validation before training) are not scored.
- kNN (``knn/<layer>/top1``, ``knn.py``): at each validation the bank is rebuilt from ``knn_bank_size``
  training crops spread evenly over the training set, with one no-grad forward in eval mode (the mode the
  validation queries are in, so bank and queries are features of the same network), and the validation
  crops' features are classified against it. This is the one extra forward the callback makes:
  ``knn_bank_size`` images per validation, forward only, up to the deepest layer. At ImageNet scale
  (``val_check_interval`` 10,000 steps of 40 crops, bank 10,000 crops) that is about 10,000 / (10,000 x 40 x 3)
  = 0.8% of the training compute. The bank lives on the device: ``knn_bank_size`` x the pooled dimensions of
  every layer, fp16 on CUDA (eccv16: 68,608 dimensions, 1.4 GB for 10,000 crops; AlexNet conv1..conv5 47,232,
  0.9 GB), freed after the validation.
- DDP: each rank trains its own heads on its own batches (an all-reduce of their gradients would move about 70
  million parameters per step at 1000 classes), and scores them on its own validation shard; the logged top-1
  sums the ranks' counts. Each rank holds ``1/world_size`` of the bank; the kNN merges the ranks' neighbours
  (``knn.knn_predict``), so the vote is over the whole bank.

The heads and their optimizer go into checkpoints only with ``online_eval.save_heads`` (about half of an
eccv16 checkpoint at 1000 classes); without it a resumed run trains them afresh. Every validation's counts are
kept, in checkpoints and, after each validation, in the run folder's
``online_eval.json`` (rank 0), so a resumed run keeps its earlier points; at the end of fit rank 0 also writes
``online_eval.png``: top-1 per layer over steps with 95% Wilson bands.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torch.utils.data import DataLoader

from lit_colorization.config.schema import OnlineEvalConfig
from lit_colorization.online_eval.history import (
    HISTORY_FILE,
    PLOT_FILE,
    Point,
    plot,
    read_history,
    write_history,
)
from lit_colorization.online_eval.knn import knn_predict
from lit_colorization.online_eval.probes import FeatureTap, OnlineProbes, feature_shapes, pool

log = logging.getLogger(__name__)
SEEN = "seen"


class OnlineEvaluation(Callback):
    def __init__(self, config: OnlineEvalConfig, crop_size: int, run_dir: Path) -> None:
        self.config = config
        self.crop_size = crop_size
        self.run_dir = Path(run_dir)
        self.tap: FeatureTap | None = None
        self.probes: OnlineProbes | None = None
        self.num_classes = 0
        self.history: list[Point] = []
        self._bank_loader: DataLoader | None = None
        self._bank: dict[str, Tensor] = {}
        self._bank_labels: Tensor | None = None
        self._counts: dict[str, Tensor] = {}
        self._pending_optimizer_state: dict[str, Any] | None = None
        self._device: torch.device | None = None
        self._inactive = False
        self._resumed = False

    @property
    def layers(self) -> list[str]:
        return self.tap.layers if self.tap is not None else []

    # --- set-up: heads, hooks and the bank's loader, once per run (validate and fit share them) ---
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.probes is not None or self._inactive:
            return
        datamodule = trainer.datamodule
        self.num_classes = datamodule.num_classes
        if self.num_classes < 2:
            log.warning(
                "online_eval: the training data has %d class, probes and kNN need 2 or more: off for this run",
                self.num_classes,
            )
            self._inactive = True
            return
        network = pl_module.net
        layers = list(self.config.layers) or list(network.feature_layers)
        self.probes = OnlineProbes(
            feature_shapes(network, layers, self.crop_size),
            self.num_classes,
            lr=self.config.lr,
            momentum=self.config.momentum,
            weight_decay=self.config.weight_decay,
        )
        self.tap = FeatureTap(network, layers)
        self._bank_loader = datamodule.bank_dataloader(
            self.config.knn_bank_size, trainer.global_rank, trainer.world_size
        )

    def _on_device(self, device: torch.device) -> None:
        """Heads on the run's device; an optimizer state restored from a checkpoint only once they are there."""
        if device != self._device:
            self.probes.to(device)
            self._device = device
        if self._pending_optimizer_state is not None:
            self.probes.optimizer.load_state_dict(self._pending_optimizer_state)
            self._pending_optimizer_state = None

    def _active(self, trainer: L.Trainer) -> bool:
        return self.probes is not None and not trainer.sanity_checking

    # --- training: one step of the heads per training step ---
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.tap is not None:
            self.tap.clear()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.probes is None:
            return
        features = self.tap.take()
        labels = batch["label"]
        if features and next(iter(features.values())).shape[0] == labels.shape[0]:
            self._on_device(pl_module.device)
            self.probes.update(features, labels)

    # --- validation: the bank, then every validation batch scored by the heads and the kNN ---
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active(trainer):
            return
        self._on_device(pl_module.device)
        self._counts = {}
        self._fill_bank(trainer, pl_module)

    def _fill_bank(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """This rank's bank: unit vectors of its share of the bank's training crops, in eval mode, no gradients."""
        network, device = pl_module.net, pl_module.device
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        # Written in place, so that the bank never needs twice its memory; unreadable files leave rows unused.
        capacity = len(self._bank_loader.dataset)
        bank = {
            layer: torch.empty(capacity, dims, dtype=dtype, device=device)
            for layer, dims in self.probes.dims.items()
        }
        labels = torch.empty(capacity, dtype=torch.int64, device=device)
        filled = 0
        was_training = network.training
        network.eval()
        try:
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                for batch in self._bank_loader:
                    # The module's own path from a loader batch to crops on the device (JPEG decoding included).
                    batch = pl_module.on_before_batch_transfer(batch, 0)
                    batch = pl_module.transfer_batch_to_device(batch, device, 0)
                    count = batch["label"].numel()
                    if count == 0:
                        continue
                    lightness = pl_module.targets.lab(batch["rgb"])[:, :1]
                    for layer, features in network.features(lightness, self.layers).items():
                        bank[layer][filled : filled + count] = self._unit_vectors(layer, features)
                    labels[filled : filled + count] = batch["label"]
                    filled += count
        finally:
            network.train(was_training)
            self.tap.clear()
        self._bank = {layer: rows[:filled] for layer, rows in bank.items()}
        self._bank_labels = labels[:filled]

    def _unit_vectors(self, layer: str, features: Tensor) -> Tensor:
        return F.normalize(pool(features, self.probes.sides[layer]), dim=1)

    def on_validation_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.tap is not None:
            self.tap.clear()

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active(trainer):
            return
        labels = batch["label"]
        features = self.tap.take()
        if not features:  # a batch the module did not forward: no queries, but every rank joins the kNN
            labels = labels[:0]
            features = {
                layer: torch.empty(0, self.probes.dims[layer], device=pl_module.device)
                for layer in self.layers
            }
            queries = features
        else:
            queries = {layer: self._unit_vectors(layer, features[layer]) for layer in self.layers}
        for layer in self.layers:
            bank = self._bank[layer]
            predicted = knn_predict(
                queries[layer].to(bank.dtype),
                bank,
                self._bank_labels,
                self.num_classes,
                k=self.config.knn_k,
                temperature=self.config.knn_temperature,
            )
            self._add(f"knn/{layer}", (predicted == labels).sum())
        if self.probes.steps > 0 and labels.numel() > 0:
            for layer, correct in self.probes.correct(features, labels).items():
                self._add(f"online/{layer}", correct)
        self._add(SEEN, torch.tensor(labels.numel(), device=pl_module.device))

    def _add(self, name: str, count: Tensor) -> None:
        self._counts[name] = self._counts.get(name, 0) + count

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active(trainer) or not self._counts:
            return
        self._bank, self._bank_labels = {}, None
        names = sorted(self._counts)
        # One collective for every count: the ranks' validation shards add up to the whole set.
        totals = trainer.strategy.reduce(
            torch.stack([self._counts[name] for name in names]).double(), reduce_op="sum"
        )
        counts = dict(zip(names, totals.round().long().tolist(), strict=True))
        self._counts = {}
        seen = counts.pop(SEEN)
        if seen == 0:
            return
        for name, correct in counts.items():
            pl_module.log(f"{name}/top1", 100.0 * correct / seen)
            self.history.append(Point(trainer.global_step, name, correct, seen))
        if trainer.is_global_zero:
            write_history(self.history, self.run_dir / HISTORY_FILE)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not on_fit_start: the restored global step is only known once the fit loop starts.
        if self._resumed:
            self.history = self._history_until(trainer.global_step)
            self._resumed = False

    def _history_until(self, step: int) -> list[Point]:
        """The checkpoint's points, and those of ``online_eval.json`` up to ``step``: a checkpoint is written at
        the end of a training batch, before that step's validation, whose points only the file holds. Points
        after ``step`` came from a run stopped before its next checkpoint, and are measured again."""
        path = self.run_dir / HISTORY_FILE
        try:
            written = read_history(path) if path.is_file() else []
        except (OSError, ValueError, TypeError) as error:
            log.warning(
                "online_eval: %s is unreadable (%s); keeping the checkpoint's points only", path, error
            )
            written = []
        known = {(point.metric, point.step) for point in self.history}
        extra = [point for point in written if point.step <= step and (point.metric, point.step) not in known]
        return sorted([*self.history, *extra], key=lambda point: point.step)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.history and trainer.is_global_zero:
            write_history(self.history, self.run_dir / HISTORY_FILE)
            plot(self.history, self.run_dir / PLOT_FILE, self.num_classes)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # The validation before training is torn down too; the hooks stay for the fit that follows it.
        if stage == "fit" and self.tap is not None:
            self.tap.remove()

    # --- checkpoints: heads, their optimizer and the history go on with a resumed run ---
    def state_dict(self) -> dict[str, Any]:
        if self.probes is None:
            return {}
        state = {"layers": self.layers, "history": [vars(point) for point in self.history]}
        if self.config.save_heads:
            state["heads"] = self.probes.heads.state_dict()
            state["optimizer"] = self.probes.optimizer.state_dict()
            state["steps"] = self.probes.steps
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.probes is None or not state_dict:
            return
        self.history = [Point(**row) for row in state_dict["history"]]
        self._resumed = True
        if "heads" not in state_dict:
            log.info(
                "online_eval: the checkpoint holds no heads (online_eval.save_heads=false): they start afresh"
            )
            return
        if state_dict["layers"] != self.layers or not _same_shapes(
            state_dict["heads"], self.probes.heads.state_dict()
        ):
            log.warning(
                "online_eval: the checkpoint's probes are for layers %s (or other shapes); this run's %s start afresh",
                state_dict["layers"],
                self.layers,
            )
            return
        self.probes.heads.load_state_dict(state_dict["heads"])
        self.probes.steps = state_dict["steps"]
        self._pending_optimizer_state = state_dict["optimizer"]


def _same_shapes(stored: dict[str, Tensor], current: dict[str, Tensor]) -> bool:
    return stored.keys() == current.keys() and all(stored[key].shape == current[key].shape for key in stored)
