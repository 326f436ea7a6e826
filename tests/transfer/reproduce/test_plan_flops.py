"""The plan's FLOP count of a detection training image: the trunk at the mean training scale plus the box head."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from lit_colorization.models import create_model
from transfer.reproduce.plan import detection_flops
from transfer.trunk import in_standard_geometry
from transfer.voc.voc_config import VOC_DET


def test_fc67_counts_the_standard_trunk_to_conv5_and_fc6_fc7_on_64_rois() -> None:
    config = VOC_DET.load(None, ["detector.train_sizes=[96,160]", "detector.train_max_size=1000"])
    flops, note = detection_flops(config, "alexnet", {"width": 0.25})
    # Mean scale 128: a 4:3 image of 128 x 171; the standard AlexNet at width 0.25 has 64 conv5 channels.
    with torch.device("meta"):
        network = in_standard_geometry(create_model("alexnet", width=0.25))
        with FlopCounterMode(display=False) as counter:
            network.features(torch.rand(1, 1, 128, 171), ["conv5"])
    classes = 21  # the 20 VOC classes (data.classes null) and background
    head = 64 * 2 * (64 * 36 * 4096 + 4096 * 4096 + 4096 * 5 * classes)
    assert flops == counter.get_total_flops() + head
    assert note.startswith("faster-rcnn-fc67: the trunk to conv5 at 128 x 171 and the box head on 64 RoIs")


def test_mlp_counts_its_own_layer_at_the_test_scale_and_512_rois() -> None:
    config = VOC_DET.load(None, ["protocol=faster-rcnn-mlp", "detector.min_size=96", "detector.max_size=96"])
    flops, note = detection_flops(config, "alexnet", {"width": 0.25})
    assert note.startswith("faster-rcnn-mlp: the trunk to conv5 at 72 x 96 and the box head on 512 RoIs")
    hidden = config.detector.representation_size
    assert flops > 512 * 2 * hidden * hidden  # at least the second MLP layer over every RoI
