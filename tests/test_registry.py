"""The one registry style: register, look up, list; an unknown name lists the known ones."""

from __future__ import annotations

import pytest

from lit_colorization.config.commands import COMMANDS
from lit_colorization.evaluation.eval_config import EVAL_COLOR
from lit_colorization.models.registry import MODELS
from lit_colorization.pretrain.initialisation import INITIALISATIONS
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.registry import Registry, UnknownNameError
from transfer.probe.probe_config import PROBE
from transfer.probe.protocols import PROTOCOLS
from transfer.voc.voc_config import VOC_CLS, VOC_DET, VOC_SEG


def test_register_returns_the_entry_and_get_finds_it() -> None:
    colours = Registry[int]("colour")
    assert colours.register("red", 1) == 1
    assert colours.decorator("blue")(2) == 2
    assert colours.get("red") == 1 and colours.names() == ["blue", "red"] and "blue" in colours
    assert colours.items() == [("blue", 2), ("red", 1)] and len(colours) == 2


def test_a_taken_name_is_an_error_unless_replaced() -> None:
    colours = Registry[int]("colour")
    colours.register("red", 1)
    with pytest.raises(ValueError, match="colour name 'red' is already registered"):
        colours.register("red", 2)
    colours.register("red", 3, replace=True)
    assert colours.get("red") == 3


def test_an_unknown_name_lists_the_known_ones() -> None:
    colours = Registry[int]("colour")
    colours.register("red", 1)
    colours.register("blue", 2)
    with pytest.raises(UnknownNameError, match=r"^unknown colour 'green'; known: blue, red$"):
        colours.get("green")


def test_every_named_choice_is_a_registry() -> None:
    # each command registers itself where its config is declared
    assert [c.name for c in (PRETRAIN, EVAL_COLOR, PROBE, VOC_CLS, VOC_DET, VOC_SEG)] == [
        "pretrain", "eval-color", "linear-probe", "voc-cls", "voc-det", "voc-seg"
    ]  # fmt: skip
    assert {"alexnet", "eccv16", "resnet50"} <= set(MODELS.names())
    assert {"zhang16", "goyal19"} <= set(PROTOCOLS.names())
    assert {"default", "kraehenbuehl"} <= set(INITIALISATIONS.names())
    assert {"pretrain", "linear-probe", "voc-cls", "voc-det", "voc-seg", "eval-color"} <= set(
        COMMANDS.names()
    )
    for registry in (MODELS, PROTOCOLS, INITIALISATIONS, COMMANDS):
        assert isinstance(registry, Registry)
        with pytest.raises(UnknownNameError, match="known: "):
            registry.get("no-such-name")
