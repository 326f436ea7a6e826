"""The release's rescaling of a pretrained network before VOC fine-tuning (docs/reference.md section 11.3).

``postprocess_model.sh`` ran Kraehenbuehl's between-layer step on the BatchNorm-folded standard network under a
fresh 1000-way top layer, fed 10 batches of 80 random, mirrored 227 crops of the ImageNet training LMDB (photos
squashed to 256 x 256). With ``rescale_images`` naming an ImageNet training folder, this is what runs; without it
the crops come from the VOC training images (ImageNet not being assumed at hand), and the rows say which.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_colorization.color import uint8_to_lab
from lit_colorization.data.images import read_rgb
from lit_colorization.data.listing import list_images
from lit_colorization.models import ColorizationNet
from lit_colorization.models.data_init import between_layer_rescale_
from transfer.voc.sources import ScaleJitterCrop

# train_val_nobn_rs.prototxt lines 14-18 and 269-277, postprocess_model.sh line 12 (-nit 10): 10 batches of 80
# crops of 227, a fresh 1000-way fc8 N(0, 0.01^2) with bias 1.
RESCALE_CROPS = 800
RESCALE_CROP = 227
IMAGENET_SQUASH = 256  # the release's LMDB (docs/reference.md section 5)
RESCALE_HEAD_CLASSES = 1000
RESCALE_HEAD_STD = 0.01
RESCALE_HEAD_BIAS = 1.0
log = logging.getLogger(__name__)


def imagenet_rescale_crops(folder: str | Path, generator: torch.Generator) -> Tensor:
    """``RESCALE_CROPS`` uint8 crops (N x 3 x 227 x 227) as the release's data layer gave them: images spread
    evenly over ``folder``'s sorted listing, each squashed to 256 x 256, cropped at random and mirrored with
    probability 1/2. A folder with too few readable images is a one-line error naming it."""
    names = list_images(str(folder))
    if len(names) < RESCALE_CROPS:
        raise ValueError(
            f"config key 'rescale_images': {folder} holds {len(names)} images, the release's rescaling takes "
            f"{RESCALE_CROPS} (an ImageNet training folder); or leave it null to rescale on VOC crops"
        )
    step = len(names) / RESCALE_CROPS
    crops = []
    for index in range(RESCALE_CROPS):
        path = Path(folder) / names[int(index * step)]
        pixels = read_rgb(path, strict=True)
        image = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()
        squashed = F.interpolate(
            image, size=(IMAGENET_SQUASH, IMAGENET_SQUASH), mode="bilinear", antialias=True
        )
        top, left = (
            int(torch.randint(IMAGENET_SQUASH - RESCALE_CROP + 1, (1,), generator=generator)) for _ in "yx"
        )
        crop = squashed[0, :, top : top + RESCALE_CROP, left : left + RESCALE_CROP]
        if bool(torch.rand((), generator=generator) < 0.5):
            crop = crop.flip(-1)
        crops.append(crop.round().clamp(0, 255).to(torch.uint8))
    return torch.stack(crops)


def voc_rescale_crops(train: Any, generator: torch.Generator) -> Tensor:
    """``RESCALE_CROPS`` uint8 227 crops at scale 1 of ``train``'s images taken in turn (smaller ones upsampled)."""
    view = ScaleJitterCrop(RESCALE_CROP, 1.0, 1.0, generator)
    return torch.stack([view(train[index % len(train)][0]) for index in range(RESCALE_CROPS)])


def release_rescale_(
    network: ColorizationNet, train: Any, seed: int, imagenet_folder: str | None = None
) -> dict[str, Any]:
    """The release's between-layer rescaling of the folded standard network (in place), under a fresh 1000-way
    top layer that is put back afterwards, on ImageNet crops from ``imagenet_folder`` or else VOC crops of
    ``train`` (items whose first element is a uint8 3 x H x W image). Returns the row's record of it."""
    generator = torch.Generator().manual_seed(seed)
    if imagenet_folder is None:
        crops, described = voc_rescale_crops(train, generator), "the VOC training images (release: ImageNet)"
    else:
        crops, described = (
            imagenet_rescale_crops(imagenet_folder, generator),
            "ImageNet training images",
        )
    device = next(network.parameters()).device
    lightness = uint8_to_lab(crops.to(device))[:, :1]
    logits = network.logits
    fresh = nn.Conv2d(logits.in_channels, RESCALE_HEAD_CLASSES, 1).to(device)
    with torch.no_grad():
        fresh.weight.copy_(torch.randn(fresh.weight.shape, generator=generator) * RESCALE_HEAD_STD)
        fresh.bias.fill_(RESCALE_HEAD_BIAS)
    network.logits = fresh
    try:
        report = between_layer_rescale_(network, lightness, seed=seed)
    finally:
        network.logits = logits
    log.info(
        "rescaled the folded standard network on %d crops of %s under a fresh 1000-way layer: gradient/weight "
        "ratio spread %.3g -> %.3g in %d steps",
        RESCALE_CROPS,
        described,
        report.ratio_spread_before,
        report.ratio_spread_after,
        report.iterations,
    )
    return {
        "rescale_method": f"between-layer, {RESCALE_CROPS} crops of {RESCALE_CROP} of {described}, fresh 1000-way top",
        "rescale_images": imagenet_folder,
    }
