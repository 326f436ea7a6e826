"""Hostile inputs: clashing output names, stores that cannot be written, data without colour, broken weights,
symlink loops, malformed annotations. Each gives one line naming the file or key, or a warning, and loses nothing.

The ``write_*`` functions also make the inputs of ``scripts/fault_drill.sh``.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from lit_colorization.cli.colorize import main as colorize_main
from lit_colorization.cli.common import one_line
from lit_colorization.cli.pretrain import main as pretrain_main
from lit_colorization.color import ab_bins
from lit_colorization.data.listing import list_images, scan_split
from lit_colorization.inference.colorizer import colorize_rgb, load_colorizer
from lit_colorization.inference.photo_files import collect_inputs
from lit_colorization.models import create_model
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.runtime.trainer import lightning_trainer_args
from lit_colorization.store.checkpoint import (
    CHECKPOINT_KEY,
    CheckpointError,
    read_checkpoint,
    write_checkpoint,
)
from lit_colorization.store.results import publish_results
from lit_colorization.study.app import MAX_REQUEST_BYTES, create_app
from tests.config.test_fault_configs import one_line_error
from tests.helpers import tiny_pretrain_overrides, tiny_synthetic_data
from tests.study.test_study_app import make_study
from tests.transfer.voc.test_voc_cls import TINY_CLASSES
from transfer.cli.probe import main as probe_main
from transfer.voc.dataset import VOCClassification, VOCDetectionDataset
from transfer.voc.sources import ensure_tiny_voc
from transfer.voc.voc_config import TinyVOCConfig

CLASHING_INPUTS = ("A/x.jpg", "B/x.jpg", "C/p.jpg", "C/p.png")


def write_colorize_inputs(folder: Path) -> list[Path]:
    """Colour photos whose stems clash: the same name in two folders, two suffixes of one name in one folder."""
    written = []
    for index, name in enumerate(CLASHING_INPUTS):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 20), (200, 40 * index, 30)).save(path)
        written.append(path)
    return written


def write_gray_training_set(root: Path) -> Path:
    """A folder training set (train/ and val/) of gray photos, and a valid prior file; returns the prior's path."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            shade = rng.integers(0, 256, (48, 48), dtype=np.uint8)
            Image.fromarray(np.stack([shade] * 3, axis=-1)).save(root / split / f"{index}.png")
    prior = root / "prior.npy"
    np.save(prior, np.full(ab_bins().shape[0], 1.0 / ab_bins().shape[0], dtype=np.float32))
    return prior


def write_symlink_trees(folder: Path) -> dict[str, Path]:
    """Data roots whose train/ holds a link to itself ("loop") or to its own parent folder ("cycle")."""
    roots = {}
    for kind, target in (("loop", "self_link"), ("cycle", "..")):
        root = folder / kind
        for split in ("train", "val"):
            (root / split / "photos").mkdir(parents=True, exist_ok=True)
            for index in range(4):
                Image.new("RGB", (48, 48), (200, 50 * index, 30)).save(
                    root / split / "photos" / f"{index}.png"
                )
        (root / "train" / "photos" / "self_link").symlink_to(target)
        roots[kind] = root
    return roots


def _official_layout(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our eccv16 weights renamed to the authors' released key layout (docs/reference.md section 4)."""
    renamed = {}
    for key, value in network.state_dict().items():
        block, rest = key.split(".", 1)
        if block.startswith("conv"):
            renamed[f"model{block[4:]}.{rest}"] = value
        elif block == "logits":
            renamed[f"model8.6.{rest}"] = value
        elif block == "decode":
            renamed[f"model_out.{rest}"] = value
    return renamed


def write_bad_weights(folder: Path) -> dict[str, Path]:
    """Checkpoints and official state dicts that load but must not be used."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    whole = write_checkpoint(
        folder / "good.ckpt", create_model("eccv16", width=0.125), ab_bins(), None, {"run": "good"}
    )
    raw = torch.load(whole, weights_only=True)
    paths = {}

    nan = {**raw, "state_dict": dict(raw["state_dict"])}
    nan["state_dict"]["net.conv1.0.weight"] = torch.full_like(
        nan["state_dict"]["net.conv1.0.weight"], float("nan")
    )
    paths["nan"] = folder / "nan.ckpt"
    torch.save(nan, paths["nan"])

    no_name = {**raw, CHECKPOINT_KEY: {k: v for k, v in raw[CHECKPOINT_KEY].items() if k != "model_name"}}
    paths["no_model_name"] = folder / "no_model_name.ckpt"
    torch.save(no_name, paths["no_model_name"])

    lists = {**raw, CHECKPOINT_KEY: list(raw[CHECKPOINT_KEY].items())}
    paths["entry_list"] = folder / "entry_list.ckpt"
    torch.save(lists, paths["entry_list"])

    official = _official_layout(create_model("eccv16"))
    official_nan = dict(official)
    official_nan["model1.0.weight"] = torch.full_like(official["model1.0.weight"], float("nan"))
    paths["official_nan"] = folder / "official_nan.pth"
    torch.save(official_nan, paths["official_nan"])
    paths["official_non_tensor"] = folder / "official_non_tensor.pth"
    torch.save({**official, "model1.0.weight": [1.0, 2.0]}, paths["official_non_tensor"])
    return paths


def tiny_voc(cache_dir: Path) -> Path:
    """The tiny generated VOC of the VOC tests' settings (tests/test_voc_cls.py tiny_data_overrides)."""
    settings = TinyVOCConfig(
        cache_dir=str(cache_dir), num_train=6, num_val=6, num_test=6, image_size=64, classes=TINY_CLASSES
    )
    return ensure_tiny_voc(settings)


def first_test_annotation(root: Path) -> Path:
    """The annotation ``write_hostile_voc`` damages: the first test image's, which every VOC run reads."""
    year = root / "VOCdevkit" / "VOC2007"
    first_test_image = (year / "ImageSets" / "Main" / "test.txt").read_text().split()[0]
    return year / "Annotations" / f"{first_test_image}.xml"


def first_test_image(root: Path) -> Path:
    """The JPEG of the first test image, which every VOC run reads."""
    return (
        first_test_annotation(root).parent.parent / "JPEGImages" / f"{first_test_annotation(root).stem}.jpg"
    )


def write_hostile_voc(source: Path, folder: Path) -> dict[str, Path]:
    """Copies of the VOC root ``source``: as it is, with a truncated annotation, with boxes outside the image,
    with the first test image's JPEG truncated, and with no clear positive of "dog" among the training images."""
    roots = {}
    for kind in ("clean", "malformed", "outside", "truncated_image", "no_dog"):
        roots[kind] = folder / kind
        shutil.copytree(source, roots[kind])
    image = first_test_image(roots["truncated_image"])
    image.write_bytes(image.read_bytes()[:300])
    year = roots["no_dog"] / "VOCdevkit" / "VOC2007"
    for split in ("train", "val"):  # every dog of the training images made difficult: no clear positive left
        flags = []
        for image_id in (year / "ImageSets" / "Main" / f"{split}.txt").read_text().split():
            annotation = year / "Annotations" / f"{image_id}.xml"
            tree = ElementTree.parse(annotation)
            dogs = [obj for obj in tree.getroot().iter("object") if obj.findtext("name") == "dog"]
            for dog in dogs:
                dog.find("difficult").text = "1"
            tree.write(annotation)
            flags.append(f"{image_id} {0 if dogs else -1}\n")  # VOC's 0: present only as difficult
        (year / "ImageSets" / "Main" / f"dog_{split}.txt").write_text("".join(flags))
    trainval = [(year / "ImageSets" / "Main" / f"dog_{split}.txt").read_text() for split in ("train", "val")]
    (year / "ImageSets" / "Main" / "dog_trainval.txt").write_text("".join(trainval))
    malformed = first_test_annotation(roots["malformed"])
    malformed.write_text(malformed.read_text()[:200])
    outside = first_test_annotation(roots["outside"])
    tree = ElementTree.parse(outside)
    width = int(tree.findtext("size/width"))
    # The first box now runs past the right edge, and a copy of it lies wholly beyond that edge.
    first = tree.find("object")
    first.find("bndbox/xmax").text = str(width + 100)
    beyond = copy.deepcopy(first)
    beyond.find("bndbox/xmin").text = str(width + 10)
    tree.getroot().append(beyond)
    tree.write(outside)
    return roots


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    return {"good": folder / "good.ckpt", **write_bad_weights(folder)}


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("voc")
    return write_hostile_voc(tiny_voc(folder / "cache"), folder / "hostile")


def _colorize(ckpt: Path, *argv: str, capsys) -> str:
    """The summary line of a colorize run."""
    colorize_main(["--ckpt", str(ckpt), "--size", "32", *argv])
    [summary] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("colorized ")]
    return summary


# ---------------------------------------------------------------- nothing written is lost


def test_clashing_stems_get_distinct_outputs_and_a_true_count(tmp_path, weights, capsys) -> None:
    inputs = [str(path) for path in write_colorize_inputs(tmp_path / "in")]
    out = tmp_path / "out"
    first = _colorize(weights["good"], "--out", str(out), *inputs, capsys=capsys)
    written = sorted(str(path.relative_to(out)) for path in out.rglob("*.png"))
    assert written == ["A/x.png", "B/x.png", "C/p.jpg.png", "C/p.png.png"]
    assert first.startswith("colorized 4 image(s)") and "kept" not in first
    again = _colorize(weights["good"], "--out", str(out), *inputs, "--overwrite", capsys=capsys)
    assert again.startswith("colorized 4 image(s)")
    # One input alone keeps the plain name; a folder given alone keeps its own layout.
    assert collect_inputs([inputs[0]], out) == [(Path(inputs[0]), out / "x.png")]
    layout = collect_inputs([str(tmp_path / "in")], out)
    assert [target.relative_to(out).as_posix() for _, target in layout] == [
        "A/x.png", "B/x.png", "C/p.jpg.png", "C/p.png.png",
    ]  # fmt: skip


def test_an_output_folder_inside_the_input_folder_is_not_read_back(tmp_path, weights, capsys) -> None:
    write_colorize_inputs(tmp_path / "in")
    out = tmp_path / "in" / "colorized"
    _colorize(weights["good"], "--out", str(out), str(tmp_path / "in"), capsys=capsys)
    again = _colorize(weights["good"], "--out", str(out), str(tmp_path / "in"), capsys=capsys)
    assert again.startswith("colorized 0 image(s)") and "kept 4 existing" in again
    assert not (out / "colorized").exists()
    with pytest.raises(ValueError, match="its output would replace it"):
        collect_inputs([str(tmp_path / "in" / "C" / "p.png")], tmp_path / "in" / "C")


def test_inputs_from_a_list_file_keep_spaces(tmp_path, weights, capsys) -> None:
    photo = tmp_path / "my photos" / "with space.jpg"
    photo.parent.mkdir()
    Image.new("RGB", (20, 16), (30, 160, 200)).save(photo)
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"{photo}\n\n")
    _colorize(weights["good"], "--out", str(tmp_path / "out"), "--inputs-from", str(listing), capsys=capsys)
    assert (tmp_path / "out" / "with space.png").is_file()


def test_a_store_that_cannot_be_written_costs_a_warning_not_the_results(tmp_path, caplog) -> None:
    store = tmp_path / "store_is_a_folder"
    store.mkdir()
    rows = [{"task": "linear-probe", "layer": "conv1", "top1": 12.5}]
    with caplog.at_level(logging.WARNING):
        assert publish_results(rows, tmp_path / "run" / "results.json", store) is False
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == rows
    [warning] = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert (
        warning.startswith(f"{store}: could not append") and str(tmp_path / "run" / "results.json") in warning
    )
    assert publish_results(rows, tmp_path / "other" / "results.json", tmp_path / "ok.jsonl") is True
    assert json.loads((tmp_path / "ok.jsonl").read_text()) == rows[0]
    with pytest.raises(ValueError, match="not storable"):
        publish_results([{"task": "x", "top1": float("nan")}], tmp_path / "nan" / "results.json", store)
    assert not (tmp_path / "nan").exists()


def test_a_probe_with_an_unwritable_store_prints_and_keeps_its_results(tmp_path, weights, capsys) -> None:
    store = tmp_path / "store_is_a_folder"
    store.mkdir()
    probe_main(
        [
            f"ckpt={weights['good']}",
            "layer=conv1",
            "run=ro",
            f"runs_dir={tmp_path / 'runs'}",
            f"results={store}",
            *tiny_synthetic_data(batch_size=8),
            "trainer.accelerator=cpu",
            "schedule.unit=epoch",
            "schedule.length=1",
            "trainer.progress_bar=false",
            "logger.kind=none",
        ]
    )
    out = capsys.readouterr().out
    assert "top-1" in out and "rows in results.json only" in out
    assert json.loads((tmp_path / "runs" / "probe-ro" / "results.json").read_text())[0]["layer"] == "conv1"


# ---------------------------------------------------------------- silent wrong results


def test_gray_training_data_with_a_given_prior_is_refused(tmp_path, capsys) -> None:
    prior = write_gray_training_set(tmp_path / "gray")
    argv = [
        *tiny_pretrain_overrides(tmp_path / "runs"),
        "data.source=folder",
        f"data.root={tmp_path / 'gray'}",
        f"targets.prior_path={prior}",
    ]
    line = one_line_error(pretrain_main, argv, capsys)
    assert "no colour in the training data" in line and "at step 2" in line


@pytest.mark.parametrize("prior", [False, True])
def test_fewer_training_images_than_a_batch_say_so(tmp_path, capsys, prior) -> None:
    argv = [*tiny_pretrain_overrides(tmp_path / "runs"), "data.synthetic_train_images=3"]
    if prior:
        argv.append(f"targets.prior_path={write_gray_training_set(tmp_path / 'gray')}")
    line = one_line_error(pretrain_main, argv, capsys)
    assert "3 training images but data.batch_size=4" in line and "drop_last" in line


@pytest.mark.parametrize("kind", ["nan", "official_nan"])
def test_non_finite_weights_are_refused(tmp_path, weights, capsys, kind) -> None:
    photo = tmp_path / "red.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(photo)
    official = ["--weights-format", "official"] if kind == "official_nan" else []
    argv = ["--ckpt", str(weights[kind]), *official, "--out", str(tmp_path / "out"), str(photo)]
    line = one_line_error(colorize_main, argv, capsys)
    assert str(weights[kind]) in line and "not finite" in line and "conv1.0.weight" in line
    assert not (tmp_path / "out").exists()


def test_colorize_never_returns_a_picture_from_a_non_finite_prediction(weights) -> None:
    colorizer = load_colorizer(weights["good"])
    with torch.no_grad():
        colorizer.network.conv1[0].weight.fill_(float("nan"))
    rgb = torch.full((16, 16, 3), 120, dtype=torch.uint8)
    with pytest.raises(ValueError, match="not finite"):
        colorize_rgb(colorizer, rgb, 0.38, 32)


# ---------------------------------------------------------------- one line, not a traceback


@pytest.mark.parametrize("kind", ["loop", "cycle"])
def test_symlink_loops_in_the_data_tree_name_the_link(tmp_path, kind) -> None:
    root = write_symlink_trees(tmp_path)[kind]
    link = root / "train" / "photos" / "self_link"
    with pytest.raises(ValueError, match="symbolic link") as error:
        scan_split(str(root / "train"))
    assert str(error.value).startswith(f"{link}: ")
    with pytest.raises(ValueError, match="symbolic link"):
        list_images(str(root))
    assert list_images(str(root / "val")) == [f"photos/{index}.png" for index in range(4)]


@pytest.mark.parametrize("kind", ["no_model_name", "entry_list"])
def test_a_damaged_checkpoint_entry_names_the_file_and_the_key(weights, kind) -> None:
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(weights[kind])
    message = str(error.value)
    assert message.startswith(f"{weights[kind]}: its 'lit_colorization' entry")
    assert (
        "'model_name' is missing" if kind == "no_model_name" else "is a list, expected a dictionary"
    ) in message


def test_official_weights_with_a_value_that_is_not_a_tensor_name_it(weights) -> None:
    with pytest.raises(CheckpointError, match=r"not tensors: \['model1.0.weight \(list\)'\]") as error:
        load_colorizer(weights["official_non_tensor"], "official")
    assert str(error.value).startswith(str(weights["official_non_tensor"]))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["--out", "{file}"], "exists and is not a folder"), (["--size", "-8"], "--size: expected 0")],
)
def test_colorize_argument_errors_are_one_line(tmp_path, weights, capsys, argv, expected) -> None:
    photo = tmp_path / "red.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(photo)
    (tmp_path / "a_file").write_text("")
    argv = [arg.format(file=tmp_path / "a_file") for arg in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    line = one_line_error(colorize_main, ["--ckpt", str(weights["good"]), *argv, str(photo)], capsys)
    assert expected in line


@pytest.mark.parametrize("workers", [0, 2])
def test_a_malformed_voc_annotation_is_named_even_from_a_worker(voc, workers) -> None:
    dataset = VOCClassification(
        voc["malformed"], image_set="test", classes=TINY_CLASSES, transform=lambda image: image[:, :8, :8]
    )
    annotation = first_test_annotation(voc["malformed"])
    loader = DataLoader(dataset, batch_size=2, num_workers=workers)
    with pytest.raises(ValueError) as error:
        list(loader)
    assert one_line(error.value).startswith(f"{annotation}: not a well-formed VOC annotation")


def test_the_study_server_answers_404_to_a_huge_index_and_413_to_a_huge_body(tmp_path) -> None:
    client = create_app(make_study(tmp_path / "study"), tmp_path / "study.sqlite", trials=2).test_client()
    client.post("/start")
    assert client.get("/image/1/left").status_code == 200
    assert client.get("/image/2/left").status_code == 404
    assert client.get(f"/image/{10**20}/left").status_code == 404
    big = client.post(
        "/answer", data={"trial": "0", "chosen_side": "left", "response_ms": "5" * MAX_REQUEST_BYTES}
    )
    assert big.status_code == 413


# ---------------------------------------------------------------- warnings


@pytest.mark.skipif(torch.cuda.is_available(), reason="the warning is about machines without a GPU")
def test_several_devices_without_a_gpu_are_named_once(caplog) -> None:
    config = PRETRAIN.load("sample", ["trainer.accelerator=auto", "trainer.devices=2"])
    with caplog.at_level(logging.WARNING):
        lightning_trainer_args(config.trainer)
        lightning_trainer_args(
            PRETRAIN.load("sample", ["trainer.accelerator=cpu", "trainer.devices=2"]).trainer
        )
    [warning] = [record.getMessage() for record in caplog.records]
    assert warning.startswith(
        "trainer.devices=2 (GPUS) but no GPU is available: running 2 processes on the CPU"
    )


def test_voc_boxes_outside_the_image_are_clipped_or_dropped_with_a_warning(voc, caplog) -> None:
    annotation = first_test_annotation(voc["outside"])
    with caplog.at_level(logging.WARNING):
        image, target = VOCDetectionDataset(voc["outside"], image_set="test", classes=TINY_CLASSES)[0]
    _, clean_target = VOCDetectionDataset(voc["clean"], image_set="test", classes=TINY_CLASSES)[0]
    height, width = image.shape[-2:]
    boxes = target["boxes"]
    assert len(boxes) == len(clean_target["boxes"])  # the box wholly outside is dropped
    assert float(boxes[:, 2].max()) == width and float(boxes[0, 2]) == width  # the first one cut at the edge
    assert torch.equal(boxes[1:], clean_target["boxes"][1:])
    [warning] = [record.getMessage() for record in caplog.records]
    assert (
        warning.startswith(f"{annotation}: boxes outside the {width}x{height} image") and "dropped" in warning
    )
