"""Evaluation's rebalancing weights are the training targets' own: same batch and prior, same weight per pixel."""

import numpy as np
import torch
from skimage import data

from lit_colorization.color import ab_bins, uint8_to_lab
from lit_colorization.config.loading import to_container
from lit_colorization.evaluation.checkpoints import load_checkpoints
from lit_colorization.evaluation.eval_config import EVAL_COLOR
from lit_colorization.pretrain.module import ColorizationModule
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.store.checkpoint import write_checkpoint


def test_evaluation_weighs_each_pixel_as_the_training_targets_do(tmp_path):
    # lam away from its default, so a weight that ignored the checkpoint's recipe would differ.
    config = PRETRAIN.load("sample", ["model.kwargs.width=0.125", "targets.lam=0.3"])
    bins = ab_bins()
    prior = torch.rand(bins.shape[0], generator=torch.Generator().manual_seed(0)) + 0.01
    prior = prior / prior.sum()
    module = ColorizationModule(config, bins, prior)
    checkpoint_path = write_checkpoint(tmp_path / "run.ckpt", module.net, bins, prior, to_container(config))
    (evaluated,) = load_checkpoints(
        EVAL_COLOR.load(None, [f"ckpts=[{checkpoint_path}]"]), torch.device("cpu")
    )

    photos = [data.astronaut()[100:196, 150:246], data.coffee()[50:146, 200:296]]
    rgb = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).contiguous()
    targets = module.targets(rgb)
    weights = evaluated.pixel_weights(uint8_to_lab(rgb)[:, 1:])  # the ab evaluation scores against

    assert torch.equal(weights, module.targets.metric_weights_for(targets.ab))  # validation's rebalanced AuC
    stride = module.net.output_stride
    assert torch.equal(weights[:, ::stride, ::stride], targets.pixel_weights)  # the loss, on its target grid
    assert weights.unique().numel() > 10  # real photos: many bins, many different weights
