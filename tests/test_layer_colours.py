"""One colour per layer in every figure (lit_colorization/layer_colours.py): the online evaluation's small multiples
and the linear-probe plot (make compare, make dashboard), read back from their PNGs."""

from __future__ import annotations

import numpy as np

from lit_colorization.layer_colours import LAYER_COLOURS, layer_colour
from lit_colorization.models import create_model, list_models
from lit_colorization.online_eval.history import Point, plot
from tests.helpers import read_plot
from tests.transfer.test_compare import probe_row, rows_of
from transfer.compare import paper_series, plot_linear_probe, probe_series

PROBED = ("conv1", "conv2", "conv3", "conv4", "conv5")
ONLINE = ("conv1", "conv3", "conv5")


def columns_in(pixels: np.ndarray, colour: str) -> np.ndarray:
    """The x of every pixel of exactly ``colour`` (``#rrggbb``)."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)
    return np.nonzero((pixels == rgb).all(axis=2))[1]


def test_every_network_draws_each_of_its_layers_in_a_colour_of_its_own():
    for model in list_models():
        layers = create_model(model).feature_layers
        assert set(layers) <= set(LAYER_COLOURS), (model, set(layers) - set(LAYER_COLOURS))
        assert len({layer_colour(layer) for layer in layers}) == len(layers), model
    assert len(set(LAYER_COLOURS.values())) == len(LAYER_COLOURS)
    assert layer_colour("stage9") == layer_colour("stage9") not in LAYER_COLOURS.values()


def test_a_layer_has_the_same_colour_in_the_online_evaluation_and_the_linear_probe_plot(tmp_path):
    online = tmp_path / "online_eval.png"
    plot([Point(step, f"{kind}/{layer}", 10 + step, 40) for step in (0, 5) for kind in ("online", "knn")
          for layer in ONLINE], online, num_classes=10)  # fmt: skip
    probe = tmp_path / "linear_probe.png"
    mine = probe_series(rows_of(*(probe_row("mine", layer, 10.0 + 4 * k) for k, layer in enumerate(PROBED))))
    plot_linear_probe([*mine[0], *paper_series()], probe)
    online_pixels = read_plot(online, width=1122, height=374)  # three panels side by side
    probe_pixels = read_plot(probe, width=605, height=462)  # one panel: alexnet, zhang16
    # In the probe plot each layer's colour stands at that layer's place on the x axis, left to right ...
    probe_x = [columns_in(probe_pixels, layer_colour(layer)) for layer in PROBED]
    assert all(len(xs) >= 20 for xs in probe_x), [len(xs) for xs in probe_x]
    assert [np.median(xs) for xs in probe_x] == sorted(np.median(xs) for xs in probe_x)
    # ... and in the small multiples, in that layer's panel (conv1, conv3, conv5 from the left).
    online_x = [columns_in(online_pixels, layer_colour(layer)) for layer in ONLINE]
    assert all(len(xs) >= 20 for xs in online_x), [len(xs) for xs in online_x]
    third = 1122 / 3
    assert [int(np.median(xs) // third) for xs in online_x] == [0, 1, 2]
    # A layer drawn in neither figure leaves no colour in them.
    for absent in ("fc7", "res2", "conv8"):
        assert len(columns_in(probe_pixels, layer_colour(absent))) < 5, absent
        assert len(columns_in(online_pixels, layer_colour(absent))) < 5, absent
