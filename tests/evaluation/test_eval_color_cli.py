"""``python -m lit_colorization.cli.eval_color`` end to end: rows, table, grids, sweep plot, study folder, bad inputs."""

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from skimage.color import rgb2lab

from lit_colorization.cli.eval_color import main
from lit_colorization.color import ab_bins
from lit_colorization.color.metrics import auc
from lit_colorization.data import SyntheticColorDataset
from lit_colorization.models import create_model
from lit_colorization.store.checkpoint import build_network, read_checkpoint, write_checkpoint
from lit_colorization.store.results import SCHEMA
from lit_colorization.study.pairs import find_pairs
from tests.helpers import read_plot

# The synthetic validation set of tests/conftest.py's tiny run: 8 crops of 32 x 32, the last one gray.
TINY_DATA = {
    "source": "synthetic",
    "crop_size": 32,
    "synthetic_size": 48,
    "synthetic_val_images": 8,
    "batch_size": 4,
    "num_workers": 0,
}


def write_untrained_checkpoint(path, loss="classification", data=None, seed=0):
    """A narrow eccv16 with random weights in our checkpoint format; ``loss="l2"`` gives the regression net."""
    torch.manual_seed(seed)
    network = create_model("eccv16", width=0.125, num_bins=2 if loss == "l2" else 313)
    prior = torch.rand(313) + 0.1
    config = {"loss": loss, "targets": {"lam": 0.5}, "data": data or TINY_DATA}
    return write_checkpoint(path, network, ab_bins(), prior / prior.sum(), config)


@pytest.fixture(scope="module")
def classifier_weights(tmp_path_factory):
    torch.manual_seed(0)
    network = torchvision.models.get_model("mobilenet_v3_small", weights=None)
    path = tmp_path_factory.mktemp("classifier") / "mobilenet.pth"
    torch.save(network.state_dict(), path)
    return path


def run_eval(tmp_path, *args):
    """The CLI in-process; key=value overrides go before the flags, as the Makefile passes them."""
    main([f"out_dir={tmp_path / 'reports'}", f"results={tmp_path / 'colorization.jsonl'}", *args])


def read_rows(tmp_path):
    return [json.loads(line) for line in (tmp_path / "colorization.jsonl").read_text().splitlines()]


def expected_gray_auc_percent():
    """Gray-baseline AuC of the tiny validation set, from scikit-image's Lab: colour images' pixels pooled."""
    dataset = SyntheticColorDataset(8, image_size=48, crop_size=32, split="val")
    ab = torch.stack(
        [torch.from_numpy(rgb2lab(dataset[i][0].permute(1, 2, 0).numpy() / 255.0)[..., 1:]) for i in range(8)]
    ).permute(0, 3, 1, 2)
    coloured = (ab.abs() > 5).flatten(1).any(1)
    return 100 * auc(torch.zeros_like(ab[coloured]), ab[coloured]).item(), int(coloured.sum())


def independent_auc_percent(checkpoint_path, temperature: float) -> list[float]:
    """Per-image AuC (%) of a checkpoint on the tiny validation set, computed without the evaluation pipeline."""
    colorizer = read_checkpoint(checkpoint_path)
    network = build_network(colorizer).eval()
    bins = colorizer.bins.double()
    dataset = SyntheticColorDataset(8, image_size=48, crop_size=32, split="val")
    scores = []
    for index in range(8):
        lab = rgb2lab(dataset[index][0].permute(1, 2, 0).numpy() / 255.0)
        with torch.no_grad():
            logits = network(torch.from_numpy(lab[..., 0]).float()[None, None]).double()
        annealed = torch.softmax(torch.log_softmax(logits, dim=1) / temperature, dim=1)
        ab = torch.einsum("bqhw,qc->bchw", annealed, bins)
        ab = F.interpolate(ab, size=(32, 32), mode="bilinear", align_corners=False)[0].numpy()
        error = np.hypot(ab[0] - lab[..., 1], ab[1] - lab[..., 2])
        scores.append(100.0 * np.mean([(error <= threshold).mean() for threshold in range(151)]))
    return scores


def test_eval_color_end_to_end_on_a_tiny_pretraining_run(
    tiny_pretrain_run, tmp_path, classifier_weights, capsys
):
    trained = tiny_pretrain_run / "checkpoints" / "last.ckpt"
    regression = write_untrained_checkpoint(tmp_path / "l2.ckpt", loss="l2")
    run_eval(
        tmp_path,
        "logger.kind=csv",
        "classifier_input_size=64",
        "--ckpt",
        str(trained),
        str(regression),
        "--temperatures",
        "0.01",
        "0.38",
        "1.0",
        "--classifier",
        "mobilenet_v3_small",
        "--classifier-weights",
        str(classifier_weights),
        "--name",
        "e2e",
    )
    printed = capsys.readouterr().out
    report = tmp_path / "reports" / "e2e"
    table = (report / "table.md").read_text()
    assert table in printed and "## Temperature sweep" in table

    rows = read_rows(tmp_path)
    main_rows = {row["method"]: row for row in rows if row["task"] == "eval-color"}
    sweep = [row for row in rows if row["task"] == "eval-color-sweep"]
    assert list(main_rows) == ["ground truth", "gray (ab = 0)", "last", "l2"]
    assert [(row["method"], row["temperature"]) for row in sweep] == [
        ("last", 0.01),
        ("last", 0.38),
        ("last", 1.0),
    ]
    assert json.loads((report / "results.json").read_text()) == rows
    assert all(row["schema"] == SCHEMA for row in rows)  # AuC and top-1 in percent

    truth, gray, last, l2 = main_rows.values()
    expected_auc, coloured = expected_gray_auc_percent()
    assert truth["n_images"] == 8 and truth["n_color_images"] == coloured == 7
    assert gray["auc"] == pytest.approx(expected_auc, abs=0.05)
    assert truth["auc"] == 100 and truth["ssim"] == 1 and truth["colorfulness_gap"] == 0
    assert gray["colorfulness"] < 0.1 and gray["colorfulness_gap"] == pytest.approx(
        -truth["colorfulness"], abs=0.1
    )
    assert truth["rebalance_prior"] == str(trained) and truth["rebalance_lam"] == 0.5
    # Not ImageNet's classes: top-1 is the agreement with the prediction on the ground truth.
    assert truth["top1_basis"] == "agreement-with-ground-truth" and truth["top1"] == 100
    assert all(row["top1_gray"] == gray["top1"] for row in main_rows.values())
    assert last["temperature"] == 0.38 and l2["temperature"] is None
    assert (last["auc"], last["auc_rebal"], last["colorfulness"]) == (
        sweep[1]["auc"],
        sweep[1]["auc_rebal"],
        sweep[1]["colorfulness"],
    )
    for row in (last, l2):
        assert 0 < row["auc"] < 100 and 0 < row["auc_rebal"] < 100 and 0 < row["ssim"] < 1 and row["psnr"] > 5
        assert 0 <= row["top1"] <= 100 and row["seconds"] >= 0

    # Grids: 4 images (rows) x (gray | last | l2 | ground truth) of 32 x 32 with 2-pixel gaps.
    for kind in ("best", "median", "worst"):
        assert np.asarray(Image.open(report / f"examples_{kind}.png")).shape == (4 * 34 - 2, 4 * 34 - 2, 3)
    read_plot(
        report / "temperature_sweep.png", width=1300, height=400
    )  # three panels, 13 x 4 inches at 100 dpi
    with (report / "per_image.csv").open() as stream:
        per_image = list(csv.DictReader(stream))
    assert [row["name"] for row in per_image] == [f"synthetic_{i:05d}" for i in range(8)]
    assert np.mean([float(row["last:auc"]) for row in per_image[:7]]) * 100 == pytest.approx(
        last["auc"], abs=1e-3
    )
    assert per_image[7]["colour"] == "False" and per_image[7]["last:auc"] == ""
    # Each image's AuC again from the checkpoint: scikit-image's Lab, the network, the annealed mean at T=0.38
    # and a bilinear upsampling written out here, the fraction of pixels within 0..150 by numpy.
    recomputed = independent_auc_percent(trained, temperature=0.38)
    assert [float(row["last:auc"]) * 100 for row in per_image[:7]] == pytest.approx(recomputed[:7], abs=0.02)

    pairs = find_pairs(report / "study")
    assert sorted(pairs) == [f"synthetic_{i:05d}" for i in range(7)]  # the gray photo is left out
    real = np.asarray(Image.open(pairs["synthetic_00000"].real))
    assert np.array_equal(real, SyntheticColorDataset(8, 48, 32, split="val")[0][0].permute(1, 2, 0).numpy())
    assert (report / "csv").is_dir()

    with pytest.raises(SystemExit) as exit_info:
        run_eval(tmp_path, "logger.kind=none", "--ckpt", str(trained), "--name", "e2e")
    assert exit_info.value.code == 2
    assert "e2e: this evaluation already exists" in capsys.readouterr().err


def test_folder_data_subset_file_and_skipped_semantic_metric(tmp_path, capsys):
    checkpoint = write_untrained_checkpoint(tmp_path / "net.ckpt")
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / "images" / "val" / cls).mkdir(parents=True)
        for index in range(3):
            image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
            Image.fromarray(image).save(tmp_path / "images" / "val" / cls / f"img{index}.png")
    subset = tmp_path / "subset.txt"
    subset.write_text(
        "# the paper's split is a list like this\n4\ncats/img2.png\nimg0  # dogs/img0 is ambiguous\n"
    )
    with pytest.raises(SystemExit):
        run_eval(
            tmp_path,
            "logger.kind=none",
            "--ckpt",
            str(checkpoint),
            "--data",
            str(tmp_path / "images"),
            "--subset",
            str(subset),
        )
    assert "subset.txt:4: 'img0' is ambiguous (2 images)" in capsys.readouterr().err

    subset.write_text("4\ncats/img2.png\ndogs__img0\n4\n")
    run_eval(
        tmp_path,
        "logger.kind=none",
        "study_images=2",
        "num_examples=1",
        "--ckpt",
        str(checkpoint),
        "--data",
        str(tmp_path / "images"),
        "--subset",
        str(subset),
        "--name",
        "folder",
    )
    out = capsys.readouterr().out
    assert "semantic interpretability skipped: no classifier weights given" in out
    report = tmp_path / "reports" / "folder"
    with (report / "per_image.csv").open() as stream:
        names = [row["name"] for row in csv.DictReader(stream)]
    assert names == ["dogs__img1", "cats__img2", "dogs__img0"]  # index 4 is dogs/img1; duplicates dropped
    rows = read_rows(tmp_path)
    assert (
        rows[0]["subset"] == str(subset)
        and rows[0]["n_images"] == 3
        and rows[0]["dataset"].endswith("images/val")
        and rows[0]["top1"] is None
    )
    assert "top1_basis" in rows[0] and rows[0]["top1_basis"] is None
    assert not any(row["task"] == "eval-color-sweep" for row in rows)
    pairs = find_pairs(report / "study")
    assert len(pairs) == 2
    # The crop size comes from the checkpoint's own data section (32), since the command line did not set it.
    assert Image.open(pairs[sorted(pairs)[0]].colorized).size == (32, 32)
    assert read_checkpoint(checkpoint).config["data"]["crop_size"] == 32


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda p, ck: ["--ckpt", str(p / "absent.ckpt")], "absent.ckpt: checkpoint file not found"),
        (
            lambda p, ck: ["--ckpt", str(p / "foreign.ckpt")],
            "foreign.ckpt: not a lit-colorization pretraining checkpoint",
        ),
        (lambda p, ck: [], "config key 'ckpts': no checkpoint given"),
        (
            lambda p, ck: ["--ckpt", str(ck), "--classifier", "vgg99"],
            "unknown torchvision classifier 'vgg99'",
        ),
        (
            lambda p, ck: ["--ckpt", str(ck), "--classifier-weights", str(p / "vgg16.pth")],
            "config key 'classifier_weights': file not found",
        ),
        (lambda p, ck: ["--ckpt", str(ck), "--data", str(p / "nowhere")], "data.root"),
        (lambda p, ck: ["data.crop_size=30", "--ckpt", str(ck)], "'data.crop_size': expected a multiple of"),
        (lambda p, ck: ["data.crop_sise=32", "--ckpt", str(ck)], "unknown config key 'data.crop_sise'"),
        (lambda p, ck: ["--ckpt", str(ck), "--temperatures", "0"], "config key 'sweep': expected positive"),
        (
            lambda p, ck: ["--ckpt", str(ck), "--subset", str(p / "list.txt")],
            "config key 'subset': file not found",
        ),
    ],
)
def test_bad_inputs_end_with_one_line_naming_the_file_or_key(tmp_path, capsys, make_args, message):
    checkpoint = write_untrained_checkpoint(tmp_path / "net.ckpt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.ckpt")
    with pytest.raises(SystemExit) as exit_info:
        run_eval(tmp_path, "logger.kind=none", *make_args(tmp_path, checkpoint))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0], error
    assert not (tmp_path / "colorization.jsonl").exists()
