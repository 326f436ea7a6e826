"""The Places205 linear-probe preset: the imagenet preset's protocol on a 205-category folder tree, and a tree
whose folders are not the 205 categories refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from lit_colorization.config.loading import to_container
from lit_colorization.data import build_datamodule
from transfer.cli.probe import main as probe_main
from transfer.probe.probe_config import PROBE, check_class_count

PLACES_CLASSES = 205


def _tree(root: Path, folders: list[str]) -> Path:
    """``root/{train,val}/<folder>/0.jpg`` for every folder (nested paths allowed)."""
    for split in ("train", "val"):
        for folder in folders:
            (root / split / folder).mkdir(parents=True)
            Image.new("RGB", (12, 10), (120, 80, 40)).save(root / split / folder / "0.jpg")
    return root


def test_places205_preset_is_the_imagenet_protocol_on_205_class_folders(tmp_path: Path) -> None:
    root = _tree(tmp_path / "places205", [f"category{index:03d}" for index in range(PLACES_CLASSES)])
    places = PROBE.load("places205", [f"data.root={root}"])
    imagenet = PROBE.load("imagenet", [f"data.root={root}"])
    assert places.expected_classes == PLACES_CLASSES and places.data.source == "folder"
    differing = {key for key, value in to_container(places).items() if to_container(imagenet)[key] != value}
    assert differing == {"expected_classes", "dataset"}
    assert (places.dataset, imagenet.dataset) == ("places205", "imagenet")
    datamodule = build_datamodule(places.data)
    datamodule.setup("fit")
    assert datamodule.num_classes == PLACES_CLASSES
    check_class_count(places, datamodule.classes)


def test_the_protocol_decides_how_images_reach_256_unless_data_resize_mode_says(tmp_path: Path) -> None:
    """zhang16 read the release's 256 x 256 LMDB (squashed); goyal19 scales the shorter side (fair_ssb's "scale")."""
    root = f"data.root={_tree(tmp_path / 'imagenet', ['n01440764'])}"
    modes = {
        overrides: PROBE.load("imagenet", [root, *overrides]).data.resize_mode
        for overrides in [(), ("protocol=goyal19",), ("protocol=goyal19", "data.resize_mode=squash")]
    }
    assert list(modes.values()) == ["squash", "shorter_side", "squash"]
    assert PROBE.load("imagenet", [root]).data.resize == 256
    with pytest.raises(
        ValueError, match="data.resize_mode must be one of shorter_side, squash; got 'stretch'"
    ):
        PROBE.load("imagenet", [root, "data.resize_mode=stretch"])


def test_a_tree_without_the_205_categories_is_refused_before_any_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The official release's letter-nested layout: its top folders are letters, not categories.
    root = _tree(tmp_path / "images256", ["a/abbey", "a/airport_terminal", "b/badlands", "b/bakery/shop"])
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        probe_main(
            [
                "--preset",
                "places205",
                f"data.root={root}",
                "ckpt=random",
                "model_kwargs.width=0.125",
                "data.num_workers=0",
                f"runs_dir={runs}",
                f"results={tmp_path / 'results.jsonl'}",
            ]
        )
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2
    assert (
        error.startswith("error: config key 'expected_classes'") and "holds 2 class folders (a, b)" in error
    )
    assert "expected 205" in error
    assert not runs.exists() and not (tmp_path / "results.jsonl").exists()
