"""ColorizationModule's training loss and validation metrics against independent references.

The batches hold colours clear of every rounding decision (tests/colour_references.py), a gray image that the
loss and metrics must leave out, and a prior far from uniform, so that a loss or a metric that drops the
rebalancing weights, the gray mask or the pooling over batches scores differently from the reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax
from torch.utils.data import DataLoader

from lit_colorization.color import ab_bins
from lit_colorization.color.decode import AB_SCALE
from lit_colorization.config.loading import load_config
from lit_colorization.config.schema import PretrainConfig
from lit_colorization.pretrain.module import ColorizationModule
from tests.colour_references import (
    colour_images,
    gray_image,
    nearest_bin,
    pixels,
    rebalancing_weights,
    separated_colours,
    skimage_ab,
    soft_targets,
    weighted_auc,
)
from tests.helpers import bare_trainer

BINS = ab_bins()
CROP = 32
STRIDE = 4  # eccv16's output stride: targets are every 4th pixel
# Not the defaults, so that a module which ignores the config's targets section is caught.
K, SIGMA, LAM = 4, 7.0, 0.3


def skewed_prior() -> np.ndarray:
    """Like a photo collection's: common near gray, rare when saturated, so rebalancing favours large errors."""
    radius = np.hypot(*BINS.double().numpy().T)
    return np.exp(-(radius**2) / (2 * 30.0**2)) + 1e-4


def module(*overrides: str) -> ColorizationModule:
    config = load_config(
        PretrainConfig,
        overrides=[
            "model.kwargs.width=0.125",
            f"data.crop_size={CROP}",
            "trainer.accelerator=cpu",
            f"targets.k={K}",
            f"targets.sigma={SIGMA}",
            f"targets.lam={LAM}",
            "num_val_images_logged=0",
            *overrides,
        ],
    )
    torch.manual_seed(0)
    return ColorizationModule(config, BINS, torch.from_numpy(skewed_prior()))


def images(coloured: int, seed: int) -> np.ndarray:
    """``coloured`` coloured images and one gray one, uint8 3 x CROP x CROP."""
    colours = separated_colours(BINS.double().numpy(), 96, ranks=K, seed=seed)
    return np.concatenate([colour_images(colours, coloured, CROP, seed), gray_image(CROP, seed)])


def prepared(model: ColorizationModule, rgb: np.ndarray) -> dict:
    """A batch as Lightning hands it to the step: through both batch-transfer hooks."""
    batch = {"rgb": torch.from_numpy(rgb), "skipped": torch.tensor(0)}
    return model.on_after_batch_transfer(model.on_before_batch_transfer(batch, 0), 0)


def network_output(model: ColorizationModule) -> list[torch.Tensor]:
    """Records what the network returns (the loss must be a function of exactly that)."""
    outputs: list[torch.Tensor] = []
    model.net.register_forward_hook(lambda _module, _input, output: outputs.append(output.detach()))
    return outputs


@pytest.mark.parametrize("rebalance", [True, False])
def test_training_loss_is_the_rebalanced_soft_cross_entropy_over_coloured_images(rebalance):
    model = module(f"targets.rebalance={str(rebalance).lower()}")
    rgb = images(coloured=2, seed=3)
    outputs = network_output(model)
    loss = model.training_step(prepared(model, rgb), 0)
    assert loss.requires_grad

    target_ab = pixels(skimage_ab(rgb[:2])[:, :, ::STRIDE, ::STRIDE])
    targets = soft_targets(target_ab, BINS.double().numpy(), K, SIGMA)
    weights = rebalancing_weights(skewed_prior(), LAM)[nearest_bin(target_ab, BINS.double().numpy())]
    per_pixel = -(targets * log_softmax(pixels(outputs[-1][:2].double().numpy()), axis=1)).sum(axis=1)
    rebalanced, unweighted = (weights * per_pixel).mean(), per_pixel.mean()
    assert loss.item() == pytest.approx(rebalanced if rebalance else unweighted, rel=1e-4)
    # What the weights are worth here: far more than the tolerance.
    assert abs(unweighted - rebalanced) > 0.05 * rebalanced


def test_l2_training_loss_is_the_rebalanced_squared_ab_error_over_coloured_images():
    model = module("loss=l2")
    rgb = images(coloured=2, seed=4)
    outputs = network_output(model)
    loss = model.training_step(prepared(model, rgb), 0)

    target_ab = pixels(skimage_ab(rgb[:2])[:, :, ::STRIDE, ::STRIDE])
    weights = rebalancing_weights(skewed_prior(), LAM)[nearest_bin(target_ab, BINS.double().numpy())]
    predicted = pixels(outputs[-1][:2].double().numpy())
    expected = (weights * ((predicted - target_ab / AB_SCALE) ** 2).sum(axis=1)).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_validation_auc_and_rebalanced_auc_are_the_pooled_closed_forms():
    # targets.rebalance=false: the loss is unweighted, but auc_rebal must still weight by the inverse prior.
    model = module("targets.rebalance=false")
    batches = [images(coloured=2, seed=5), images(coloured=1, seed=6)]
    predicted: list[torch.Tensor] = []
    predict_ab = model.predict_ab

    def recording_predict_ab(output, size):
        ab = predict_ab(output, size)
        predicted.append(ab.detach())
        return ab

    model.predict_ab = recording_predict_ab
    loader = DataLoader(
        [{"rgb": torch.from_numpy(rgb), "skipped": torch.tensor(0)} for rgb in batches], batch_size=None
    )
    (logged,) = bare_trainer().validate(model, dataloaders=loader, verbose=False)
    assert len(predicted) == 2

    # Every pixel of the coloured images, pooled over both batches; gray images are not scored.
    true_ab = np.concatenate([pixels(skimage_ab(rgb[:-1])) for rgb in batches])
    predicted_ab = np.concatenate([pixels(ab[:-1].double().numpy()) for ab in predicted])
    weights = rebalancing_weights(skewed_prior(), LAM)[nearest_bin(true_ab, BINS.double().numpy())]
    gray_error = np.hypot(true_ab[:, 0], true_ab[:, 1])
    error = np.hypot(*(predicted_ab - true_ab).T)
    ones = np.ones(len(true_ab))
    expected = {
        "val/auc": weighted_auc(error, ones),
        "val/auc_rebal": weighted_auc(error, weights),
        "val/auc_gray": weighted_auc(gray_error, ones),
        "val/auc_rebal_gray": weighted_auc(gray_error, weights),
    }
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, abs=1e-4), key
    # Rebalancing changes the scores by far more than the tolerance.
    assert abs(expected["val/auc_rebal"] - expected["val/auc"]) > 0.01
    assert abs(expected["val/auc_rebal_gray"] - expected["val/auc_gray"]) > 0.01
