"""One colour per feature layer, shared by every figure: a layer is drawn in the same colour in the online
evaluation's small multiples (online_eval/history.py), the linear-probe plot (transfer/compare.py) and the plots
the dashboard writes, so a reader who learnt conv3's colour in one finds it in the others.

Every feature layer of the registered networks has its own colour (tests/test_layer_colours.py checks that no
network repeats one): conv1-conv7, fc6 and fc7 take matplotlib's tab10 in depth order; conv8 a tab20b gold rather
than tab10's grey, which figures use for neutral lines (chance, published rows); ResNet stages and pooled outputs
darker tab20b tones, which tab10 does not hold. A layer of a network added later takes one of the remaining tab20b
tones, by its name, until it is given its own here.
"""

from __future__ import annotations

LAYER_COLOURS: dict[str, str] = {
    "conv1": "#1f77b4",
    "conv2": "#ff7f0e",
    "conv3": "#2ca02c",
    "conv4": "#d62728",
    "conv5": "#9467bd",
    "conv6": "#8c564b",
    "conv7": "#e377c2",
    "conv8": "#e7ba52",
    "fc6": "#bcbd22",
    "fc7": "#17becf",
    "res2": "#393b79",
    "res3": "#637939",
    "res4": "#8c6d31",
    "res5": "#843c39",
    "pool5": "#7b4173",
    "avgpool": "#5254a3",
}
# Every layer above in depth order (the order panels and ticks follow).
LAYER_ORDER = tuple(LAYER_COLOURS)
OTHER_LAYER_COLOURS = ("#6b6ecf", "#b5cf6b", "#9c9ede", "#d6616b", "#ce6dbd")


def layer_colour(layer: str) -> str:
    """The colour of ``layer`` in every figure, as ``#rrggbb``."""
    known = LAYER_COLOURS.get(layer)
    # A sum of code points, not hash(): the same colour in every process.
    return known or OTHER_LAYER_COLOURS[sum(map(ord, layer)) % len(OTHER_LAYER_COLOURS)]


def depth_key(layer: str) -> int:
    """Sorts layers in depth order (``LAYER_ORDER``), unknown layers after the known ones."""
    return LAYER_ORDER.index(layer) if layer in LAYER_ORDER else len(LAYER_ORDER)
