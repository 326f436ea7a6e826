"""``ColorizationModule``: the pretraining LightningModule. Thin: it wires targets, the network and the loss."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from lit_colorization.color.metrics import auc, colorfulness
from lit_colorization.color.pictures import colorization_grid, lab_batch_to_rgb
from lit_colorization.color.targets import ColorTargets
from lit_colorization.config.loading import to_container
from lit_colorization.data.crops import resize_rule
from lit_colorization.data.datamodule import ColorizationDataModule
from lit_colorization.data.encoded import DeviceCropper
from lit_colorization.inference.network_output import output_to_ab, upsample_ab
from lit_colorization.models import create_model
from lit_colorization.models.base import parameter_groups
from lit_colorization.pretrain.losses import ab_regression_loss, soft_cross_entropy
from lit_colorization.pretrain.schedules import step_schedule
from lit_colorization.pretrain.target_setup import build_targets
from lit_colorization.runtime.perf import adam, apply_to_network, enable_tf32, settings_for
from lit_colorization.runtime.scaling import RunScale, scale_recipe
from lit_colorization.store.checkpoint import CHECKPOINT_KEY, describe
from lit_colorization.store.images import save_png

REGRESSION_CHANNELS = 2
log = logging.getLogger(__name__)


def batch_images(batch: dict[str, Any]) -> int:
    """The number of images in a training batch (its shape: nothing is read from the device)."""
    return batch["targets"].lightness.shape[0]


class ColorizationModule(L.LightningModule):
    """``scale``: the run's lrs and milestones for its global batch (lit_colorization/runtime/scaling.py); None: the
    recipe's on one device. Checkpoints record it beside the config (``config["scale"]``)."""

    def __init__(
        self,
        config: Any,
        bins: Tensor,
        prior: Tensor,
        image_dir: str | Path | None = None,
        scale: RunScale | None = None,
    ) -> None:
        super().__init__()
        self.scale = scale_recipe(config, devices=1) if scale is None else scale
        self.config = {**to_container(config), "scale": self.scale.as_dict()}
        self.loss_kind = config.loss
        self.temperature = config.targets.temperature
        self.optim = config.optim
        # Precision, channels_last, compile, fused Adam and TF32 as they apply on this run's device.
        self.perf = settings_for(config.trainer, config.optim)
        self.num_images_logged = config.num_val_images_logged
        self.image_dir = None if image_dir is None else Path(image_dir)
        model_kwargs = dict(config.model.kwargs)
        if self.loss_kind == "l2":
            model_kwargs["num_bins"] = REGRESSION_CHANNELS
        self.net = apply_to_network(create_model(config.model.name, **model_kwargs), self.perf)
        # data.decode=gpu: batches hold JPEG bytes that become crops on the device, before the transfer.
        data = config.data
        self.device_cropper = (
            DeviceCropper(data.crop_size, resize_rule(data), data.strict) if data.decode == "gpu" else None
        )
        self.targets = build_targets(config.targets, bins, prior, stride=self.net.output_stride)
        self.prior = prior
        self.val_metrics = torch.nn.ModuleDict(
            {
                name: MeanMetric()
                for name in (
                    "auc",
                    "auc_rebal",
                    "auc_gray",
                    "auc_rebal_gray",
                    "colorfulness",
                    "colorfulness_true",
                )
            }
        )
        self.skipped_images = 0
        self.warned_gray_validation = False

    def setup(self, stage: str) -> None:
        enable_tf32(self.perf)
        datamodule = getattr(self.trainer, "datamodule", None)
        if (
            stage == "fit"
            and self.device_cropper is not None
            and isinstance(datamodule, ColorizationDataModule)
        ):
            datamodule.prepare_training_batches_ahead(self.prepare_batch, self.trainer.strategy.root_device)

    def prepare_batch(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """A loader batch of JPEG bytes as the training step takes it: crops decoded on ``device``, labels and
        targets there; what ``on_before_batch_transfer`` and ``on_after_batch_transfer`` do, in one call."""
        batch = self.device_cropper(batch, device)
        batch["targets"] = self.targets(batch["rgb"])
        return batch

    # --- data path: decoding (data.decode=gpu) and colour work happen on the device ---
    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if self.device_cropper is not None and "jpeg" in batch:
            # Decoded straight to the device: the JPEG bytes must stay on the CPU for the decoder.
            batch = self.device_cropper(batch, self.device)
        # A plain number, so that counting skipped files never waits for the device (a sync every step).
        batch["skipped"] = int(batch["skipped"])
        return batch

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if "targets" not in batch:  # else prepared ahead (data/ahead.py)
            batch["targets"] = self.targets(batch["rgb"])
        return batch

    def _network_input(self, targets: ColorTargets) -> Tensor:
        if self.perf.channels_last:
            return targets.lightness.contiguous(memory_format=torch.channels_last)
        return targets.lightness

    def forward_loss(self, targets: ColorTargets) -> Tensor:
        """The training loss of a batch of targets: the network's forward and the loss (what a step backpropagates)."""
        return self.loss(self.net(self._network_input(targets)), targets)

    def loss(self, output: Tensor, targets: ColorTargets) -> Tensor:
        if self.loss_kind == "l2":
            return ab_regression_loss(output, targets.target_ab, targets.pixel_weights, targets.colored)
        return soft_cross_entropy(
            output, targets.bin_indices, targets.bin_weights, targets.pixel_weights, targets.colored
        )

    def predict_ab(self, output: Tensor, size: tuple[int, int]) -> Tensor:
        """Full-resolution ab from the network output (annealed mean, or the regression itself)."""
        ab = output_to_ab(output, self.targets.bins, self.temperature, regression=self.loss_kind == "l2")
        return upsample_ab(ab, size)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        targets: ColorTargets = batch["targets"]
        loss = self.forward_loss(targets)
        self.skipped_images += int(batch["skipped"])
        batch_size = targets.lightness.shape[0]
        self.log("train/loss", loss, batch_size=batch_size)
        # A host tensor: a plain number would be copied to the device from pageable memory, a wait every step.
        self.log("train/skipped_images", torch.tensor(float(self.skipped_images)), batch_size=batch_size)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        targets: ColorTargets = batch["targets"]
        output = self.net(self._network_input(targets))
        batch_size = targets.lightness.shape[0]
        self.log("val/loss", self.loss(output, targets), prog_bar=True, sync_dist=True, batch_size=batch_size)
        predicted_ab = self.predict_ab(output, targets.ab.shape[-2:])
        # Gray images carry no colour to score, as in the paper's colour test split.
        plain = targets.colored.float().view(-1, 1, 1).expand(-1, *targets.ab.shape[-2:])
        rebalanced = plain * self.targets.metric_weights_for(targets.ab)
        gray_ab = torch.zeros_like(targets.ab)
        has_color = bool(targets.colored.any())
        for suffix, prediction in (("", predicted_ab), ("_gray", gray_ab)) if has_color else ():
            self.val_metrics[f"auc{suffix}"].update(auc(prediction, targets.ab, weights=plain), plain.sum())
            self.val_metrics[f"auc_rebal{suffix}"].update(
                auc(prediction, targets.ab, weights=rebalanced), rebalanced.sum()
            )
        predicted_rgb = lab_batch_to_rgb(targets.lightness, predicted_ab)
        true_rgb = lab_batch_to_rgb(targets.lightness, targets.ab)
        self.val_metrics["colorfulness"].update(colorfulness(predicted_rgb))
        self.val_metrics["colorfulness_true"].update(colorfulness(true_rgb))
        if batch_idx == 0 and self.num_images_logged > 0:
            count = self.num_images_logged
            self._log_examples(targets.lightness[:count], predicted_ab[:count], targets.ab[:count])

    def on_validation_epoch_end(self) -> None:
        values = {name: metric.compute() for name, metric in self.val_metrics.items()}
        for name, metric in self.val_metrics.items():
            self.log(f"val/{name}", values[name])
            metric.reset()
        if not self.warned_gray_validation and bool(values["auc"].isnan()) and self.trainer.is_global_zero:
            self.warned_gray_validation = True
            log.warning(
                "val/auc, val/auc_rebal and their _gray baselines are NaN: no validation image has colour (each "
                f"is gray by targets.gray_threshold={self.targets.gray_threshold}), and gray images are not scored"
            )

    def _log_examples(self, lightness: Tensor, predicted_ab: Tensor, true_ab: Tensor) -> None:
        if not self.trainer.is_global_zero or self.trainer.sanity_checking:
            return
        grid = colorization_grid(lightness, predicted_ab, true_ab)
        if self.image_dir is not None:
            save_png(grid, self.image_dir / f"val_step{self.global_step:07d}.png")
        log_image = getattr(self.logger, "log_image", None)
        if log_image is not None:
            log_image(key="val/examples", images=[grid], caption=["gray | prediction | ground truth"])

    def configure_optimizers(self) -> dict[str, Any]:
        scale = self.scale
        optim = self.optim
        groups = parameter_groups(
            self.net, scale.lr, optim.weight_decay, optim.bias_lr_mult, optim.bias_weight_decay
        )
        optimizer = adam(groups, scale.lr, tuple(optim.betas), optim.weight_decay, self.perf)
        schedule = step_schedule(optimizer, scale.lr, scale.milestones, self.optim.gamma, scale.milestone_lrs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        net = self.net
        checkpoint[CHECKPOINT_KEY] = describe(
            net.model_name,
            net.hparams_for_checkpoint(),
            self.targets.bins,
            self.prior,
            self.config,
            net.input_scaling,
        )
        checkpoint[CHECKPOINT_KEY]["skipped_images"] = self.skipped_images

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.skipped_images = int(checkpoint.get(CHECKPOINT_KEY, {}).get("skipped_images", 0))
