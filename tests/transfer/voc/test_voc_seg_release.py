"""voc-seg protocol release: the FCN-AlexNet geometry (sizes, crop offset, alignment, the fixed bilinear
deconvolution), its colour branch, the SBD reader and its errors, seg11valid, the release's schedule and
accumulation, the protocol's config rules, and `python -m transfer.cli.voc_seg` end to end on the tiny VOC2011 +
SBD (docs/reference.md section 11.6)."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from lit_colorization.config.loading import ConfigError
from lit_colorization.models import create_model
from lit_colorization.store.results import ResultRow
from tests.helpers import bare_trainer, iou_from_saved_predictions, run_module
from transfer.compare import build_sections
from transfer.trunk import in_standard_geometry
from transfer.voc.common import build_trainer
from transfer.voc.dataset import SEGMENTATION_VOID, voc_year_dir
from transfer.voc.fcn_alexnet import (
    ALIGNED_CROP_OFFSET,
    FCN_ALEXNET_LAYERS,
    RELEASE_CROP_OFFSET,
    UPSAMPLE_KERNEL,
    FCNAlexNet,
    aligned_crop_offset,
    bilinear_kernel,
)
from transfer.voc.fine_tuning import fine_tuning_optimizer
from transfer.voc.sbd import (
    SEG11VALID_IMAGES,
    SegmentationList,
    read_sbd_mask,
    release_lists,
    sbd_ids,
    seg11valid_ids,
)
from transfer.voc.segmentation import FCNSegmenter, VOCSegmentationModule, void_masked_cross_entropy
from transfer.voc.sources import resolve_release_seg_source
from transfer.voc.synthetic import SBD_FOLDER, make_tiny_sbd, make_tiny_voc
from transfer.voc.voc_config import VOC_SEG, resolve_seg_protocol

CLASSES = ("cat", "dog", "person")


def _fcn(colour_branch: bool = True, seed: int = 0, crop_offset: int = RELEASE_CROP_OFFSET) -> FCNAlexNet:
    torch.manual_seed(seed)
    network = in_standard_geometry(create_model("alexnet", width=0.125))
    return FCNAlexNet(network, 4, colour_branch, crop_offset)


def _lab(height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    lightness = torch.rand(1, 1, height, width, generator=generator) * 100
    ab = torch.rand(1, 2, height, width, generator=generator) * 160 - 80
    return torch.cat([lightness, ab], dim=1)


@pytest.fixture(scope="module")
def voc2011_sbd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_tiny_voc(
        tmp_path_factory.mktemp("voc11"),
        num_train=6,
        num_val=6,
        num_test=0,
        classes=CLASSES,
        image_size=48,
        year="2011",
    )
    make_tiny_sbd(root, num_extra=2, classes=CLASSES, image_size=48)
    return root


def test_scores_cover_the_input_exactly_for_any_size() -> None:
    for offset in (RELEASE_CROP_OFFSET, ALIGNED_CROP_OFFSET):
        fcn = _fcn(crop_offset=offset).eval()
        for height, width in [(1, 1), (31, 64), (100, 37), (227, 227), (333, 500)]:
            assert fcn(_lab(height, width)).shape == (1, 4, height, width)


def test_crop_offset_is_18_by_the_coordinate_maps_and_by_the_receptive_field_centres() -> None:
    # FCN's voc-fcn-alexnet/train.prototxt, written by caffe.coord_map.crop for this geometry: offset 18.
    assert ALIGNED_CROP_OFFSET == aligned_crop_offset() == 18
    # Independently: the centroid of score-fr pixel j's receptive field, from autograd through a chain of uniform
    # convolutions and average pools of the same kernels, strides and pads, is input pixel 32 j + 13; the
    # deconvolution centres pixel j's kernel at 32 j + (63 - 1) / 2 = 32 j + 31; 31 - 13 = 18.
    layers: list[nn.Module] = []
    for kernel, stride, pad in FCN_ALEXNET_LAYERS:
        conv = nn.Conv1d(1, 1, kernel, stride=stride, padding=pad, bias=False)
        nn.init.ones_(conv.weight)
        layers.append(conv)
    chain = nn.Sequential(*layers)
    signal = torch.ones(1, 1, 640, requires_grad=True)
    output = chain(signal)
    for j in (6, 9, 12):  # receptive fields (355 pixels) wholly inside the input
        (gradient,) = torch.autograd.grad(output[0, 0, j], signal, retain_graph=True)
        weights = gradient[0, 0]
        centre = float((weights * torch.arange(640)).sum() / weights.sum())
        assert centre == pytest.approx(32 * j + 13)
        assert (32 * j + (UPSAMPLE_KERNEL - 1) / 2) - centre == pytest.approx(ALIGNED_CROP_OFFSET)


@pytest.mark.parametrize(("offset", "lands_at"), [(ALIGNED_CROP_OFFSET, 13), (RELEASE_CROP_OFFSET, 31)])
def test_each_score_fr_value_lands_on_its_input_pixel_or_18_pixels_off(offset: int, lands_at: int) -> None:
    fcn = _fcn(crop_offset=offset).eval()
    nn.init.normal_(fcn.score.weight)
    captured = {}
    fcn.score.register_forward_hook(lambda _m, _i, out: captured.setdefault("score_fr", out))
    scores = fcn(_lab(300, 260))
    score_fr = captured["score_fr"]
    rows, cols = score_fr.shape[-2:]
    # The bilinear kernel is 1 at its centre and 0 one stride away: score-fr j, centred on input pixel 32 j + 13,
    # is exactly output pixel 32 j + 13 when aligned, 32 j + 31 as the release's Caffe cropped.
    checked = 0
    for j in range(rows):
        for i in range(cols):
            y, x = 32 * j + lands_at, 32 * i + lands_at
            if y < 300 and x < 260:
                assert torch.allclose(scores[0, :, y, x], score_fr[0, :, j, i], atol=1e-5)
                checked += 1
    assert checked >= 60


def test_the_upsampling_is_fixed_bilinear_and_never_trained() -> None:
    fcn = _fcn()
    kernel = bilinear_kernel(UPSAMPLE_KERNEL)
    ramp = 1 - (torch.arange(63.0) - 31).abs() / 32  # surgery.upsample_filt(63): factor 32, centre 31
    assert torch.allclose(kernel, ramp[:, None] * ramp[None, :]) and kernel[31, 31] == 1 and kernel[0, 0] > 0
    assert fcn.upsample.shape == (4, 1, 63, 63) and all(torch.equal(k[0], kernel) for k in fcn.upsample)
    assert "upsample" not in dict(fcn.named_parameters()) and "upsample" in fcn.state_dict()
    optimizer = fine_tuning_optimizer(fcn, resolve_seg_protocol(VOC_SEG.load("seg11", []), "alexnet").optim)
    optimized = {id(p) for group in optimizer["optimizer"].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in fcn.parameters()}
    nn.init.normal_(fcn.score.weight)
    before = fcn.upsample.clone()
    fcn(_lab(64, 64)).square().mean().backward()
    optimizer["optimizer"].step()
    assert torch.equal(fcn.upsample, before)


def test_score_fr_and_the_colour_branch_start_at_zero_and_the_branch_learns() -> None:
    fcn = _fcn()
    assert fcn.score.weight.abs().sum() == 0 and fcn.score.bias.abs().sum() == 0
    assert fcn.colour.weight.abs().sum() == 0 and fcn.colour.bias.abs().sum() == 0
    assert fcn.colour.padding == (100, 100) and fcn.network.conv1[0].padding == (100, 100)
    assert torch.count_nonzero(fcn(_lab(50, 70))) == 0  # Caffe's default filler: constant 0
    nn.init.normal_(fcn.score.weight)
    fcn(_lab(50, 70)).square().mean().backward()
    assert fcn.colour.weight.grad.abs().sum() > 0
    grey = _fcn(colour_branch=False).eval()
    assert grey.colour is None
    nn.init.normal_(grey.score.weight)
    colourful, other = _lab(50, 70), _lab(50, 70)
    other[:, 1:] = -colourful[:, 1:]
    assert torch.equal(grey(colourful), grey(other))  # without the branch, ab is never read


def test_dropout_acts_in_training_only() -> None:
    fcn = _fcn()
    nn.init.normal_(fcn.score.weight)
    lab = _lab(64, 64)
    assert not torch.equal(fcn.train()(lab), fcn(lab))
    assert torch.equal(fcn.eval()(lab), fcn(lab))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_the_release_solver_steps_the_lr_at_50k_and_100k_and_doubles_bias_rates() -> None:
    config = resolve_seg_protocol(VOC_SEG.load("seg11", []), "alexnet")
    assert (config.optim.iter_size, config.data.batch_size, config.trainer.max_steps) == (20, 1, 150_000)
    setup = fine_tuning_optimizer(_fcn(), config.optim)
    optimizer, schedule = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert (groups["weights"]["lr"], groups["weights"]["weight_decay"]) == (1e-4, 5e-4)
    assert (groups["biases"]["lr"], groups["biases"]["weight_decay"]) == (2e-4, 0.0)
    assert optimizer.defaults["momentum"] == 0.9
    seen = {}
    for step in range(150_000):
        if step in (0, 49_999, 50_000, 99_999, 100_000, 149_999):
            seen[step] = groups["weights"]["lr"]
        schedule.step()
    assert seen == {
        0: 1e-4,
        49_999: 1e-4,
        50_000: pytest.approx(1e-5),
        99_999: pytest.approx(1e-5),
        100_000: pytest.approx(1e-6),
        149_999: pytest.approx(1e-6),
    }


def test_a_step_averages_the_gradients_of_iter_size_whole_images(tmp_path: Path) -> None:
    config = resolve_seg_protocol(VOC_SEG.load("seg11", ["trainer.accelerator=cpu"]), "alexnet")
    assert (
        build_trainer(config.trainer, tmp_path, False, config.optim.iter_size).accumulate_grad_batches == 20
    )
    # Deterministic (no dropout, no BatchNorm): project-fcn's head on the folded network; one step of 4 images.
    torch.manual_seed(0)
    segmenter = FCNSegmenter(in_standard_geometry(create_model("alexnet", width=0.125)), "conv5", "conv1", 3)
    nn.init.normal_(segmenter.score.weight, std=0.1)
    images = [torch.randint(0, 256, (3, 40 + 8 * k, 48), dtype=torch.uint8) for k in range(4)]
    masks = [torch.randint(0, 3, image.shape[1:]) for image in images]
    masks[0][:10] = SEGMENTATION_VOID
    optim = SimpleNamespace(lr=1.0, momentum=0.0, weight_decay=0.0, milestones=[], gamma=0.1)
    module = VOCSegmentationModule(segmenter, 3, optim)
    start = {name: p.detach().clone() for name, p in segmenter.named_parameters() if p.requires_grad}
    expected = {name: torch.zeros_like(p) for name, p in start.items()}
    for image, mask in zip(images, masks, strict=True):
        segmenter.zero_grad()
        loss = void_masked_cross_entropy(segmenter(module.inputs(image[None])), mask[None])
        loss.backward()
        for name, p in segmenter.named_parameters():
            if p.requires_grad:
                expected[name] += p.grad / 4
    segmenter.zero_grad()
    batches = DataLoader(list(zip(images, masks, strict=True)), batch_size=1)
    bare_trainer(max_steps=1, accumulate_grad_batches=4).fit(module, train_dataloaders=batches)
    for name, p in segmenter.named_parameters():
        if p.requires_grad:
            assert torch.allclose(start[name] - p.detach(), expected[name], atol=1e-5, rtol=1e-4), name


def _write_mat(path: Path, labels: np.ndarray) -> None:
    scipy.io.savemat(path, {"GTcls": {"Segmentation": labels, "CategoriesPresent": np.array([[8]])}})


def test_sbd_masks_are_read_from_gtcls_segmentation(tmp_path: Path) -> None:
    labels = np.zeros((5, 7), dtype=np.uint8)
    labels[1:4, 2:6] = 8  # cat
    _write_mat(tmp_path / "a.mat", labels)
    mask = read_sbd_mask(tmp_path / "a.mat")
    assert mask.dtype == np.uint8 and np.array_equal(mask, labels)
    scipy.io.savemat(tmp_path / "b.mat", {"GTinst": {"Segmentation": labels}})
    with pytest.raises(ValueError, match=r"b.mat: no GTcls.Segmentation"):
        read_sbd_mask(tmp_path / "b.mat")
    (tmp_path / "c.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(ValueError, match=r"c.mat: not a readable SBD .mat file"):
        read_sbd_mask(tmp_path / "c.mat")
    scipy.io.savemat(tmp_path / "d.mat", {"GTcls": {"Segmentation": np.zeros(4)}})
    with pytest.raises(ValueError, match=r"d.mat: GTcls.Segmentation is .* expected an integer H x W"):
        read_sbd_mask(tmp_path / "d.mat")


def test_sbd_layout_errors_name_what_is_missing(voc2011_sbd: Path, tmp_path: Path) -> None:
    sbd = voc2011_sbd / SBD_FOLDER
    assert sbd_ids(sbd, "train")[-2:] == ["2011_900001", "2011_900002"]
    with pytest.raises(FileNotFoundError, match=r"SBD: missing .*/nowhere/dataset; expected SBD's layout"):
        sbd_ids(tmp_path / "nowhere", "train")
    (tmp_path / "sbd" / "dataset" / "img").mkdir(parents=True)
    (tmp_path / "sbd" / "dataset" / "cls").mkdir()
    with pytest.raises(FileNotFoundError, match=r"SBD: missing .*dataset/train.txt;.*data.sbd_root"):
        sbd_ids(tmp_path / "sbd", "train")
    (tmp_path / "sbd" / "dataset" / "train.txt").write_text("2011_000001\n")
    (tmp_path / "sbd" / "dataset" / "img" / "2011_000001.jpg").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"SBD: missing .*cls/2011_000001.mat \(1 files listed"):
        sbd_ids(tmp_path / "sbd", "train")


def test_seg11valid_is_voc2011_val_less_sbd_train() -> None:
    assert seg11valid_ids(["b", "a", "d", "c"], ["a", "x", "c"]) == ["b", "d"]
    assert SEG11VALID_IMAGES == 736


def test_release_lists_on_the_tiny_voc2011_and_sbd(voc2011_sbd: Path) -> None:
    lists = release_lists(voc2011_sbd, voc2011_sbd / SBD_FOLDER)
    lines = voc_year_dir(voc2011_sbd, "2011") / "ImageSets" / "Segmentation"
    voc_train, voc_val = ((lines / f"{split}.txt").read_text().split() for split in ("train", "val"))
    sbd_train = (voc2011_sbd / SBD_FOLDER / "dataset" / "train.txt").read_text().split()
    assert sbd_train == voc_train[::2] + voc_val[:2] + ["2011_900001", "2011_900002"]
    assert [e.image_id for e in lists.seg11valid] == voc_val[2:]
    train = {entry.image_id: entry.source for entry in lists.train}
    assert set(train) == set(voc_train) | set(sbd_train) and len(train) == len(lists.train) == 10
    assert {train[i] for i in voc_train} == {"voc2011"}  # VOC's own annotation where both have the image
    assert train["2011_900001"] == train[voc_val[0]] == "sbd"
    assert not set(train) & {e.image_id for e in lists.seg11valid}
    assert lists.counts == {
        "voc2011_train": 6,
        "sbd_train": 7,
        "voc2011_train_in_sbd_train": 3,
        "train_images": 10,
        "voc2011_val": 6,
        "seg11valid_images": 4,
    }
    # An SBD map is VOC's with the void band as background (SBD marks none); labels follow the class list.
    images = SegmentationList(lists.train, CLASSES)
    position = [e.image_id for e in lists.train].index(voc_val[0])
    image, mask = images[position]
    png = np.array(Image.open(voc_year_dir(voc2011_sbd, "2011") / "SegmentationClass" / f"{voc_val[0]}.png"))
    expected = torch.zeros(png.shape, dtype=torch.int64)
    for label, name in enumerate(CLASSES, start=1):
        expected[torch.from_numpy(png == {"cat": 8, "dog": 12, "person": 15}[name])] = label
    assert image.shape[-2:] == mask.shape and torch.equal(mask, expected)


def test_release_config_rules() -> None:
    default = VOC_SEG.load(None, [])
    assert resolve_seg_protocol(default, "alexnet").protocol == "release"
    assert resolve_seg_protocol(default, "eccv16").protocol == "project-fcn"
    with pytest.raises(ConfigError, match=r"'protocol': release .* needs an alexnet, got 'resnet50'"):
        resolve_seg_protocol(VOC_SEG.load(None, ["protocol=release"]), "resnet50")
    release = resolve_seg_protocol(default, "alexnet")
    assert (release.data.year, release.data.batch_size, release.optim.bias_lr_mult) == ("2011", 1, 2.0)
    assert release.optim.bias_weight_decay == 0.0 and release.optim.iter_size == 20
    for override, key in [
        ("data.year=2012", "'data.year'"),
        ("data.train_set=train", "'data.train_set'"),
        ("data.batch_size=4", "'data.batch_size'"),
        ("train_from=fc6", "'train_from'"),
        ("head_layer=conv5", "'head_layer'"),
        ("crop_offset=-1", "'crop_offset'"),
    ]:
        with pytest.raises(ConfigError, match=key):
            VOC_SEG.load("seg11", [override])
        with pytest.raises(ConfigError, match=key):  # null protocol that resolves to release
            resolve_seg_protocol(VOC_SEG.load(None, [override]), "alexnet")


def test_cli_release_protocol_on_the_tiny_voc2011_and_sbd(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    common = [
        "ckpt=random",
        "model=alexnet",
        "model_kwargs.width=0.125",
        f"runs_dir={tmp_path / 'runs'}",
        f"results={results}",
        f"data.tiny.cache_dir={tmp_path / 'cache'}",
        "data.tiny.num_train=4",
        "data.tiny.num_val=4",
        "data.tiny.image_size=48",
        f"data.tiny.classes=[{','.join(CLASSES)}]",
        "data.num_workers=0",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        "logger.kind=csv",
    ]
    run = run_module(
        "transfer.cli.voc_seg", *common, "rescale=false", "optim.iter_size=2", "trainer.max_steps=2"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    [row] = [json.loads(line) for line in results.read_text().splitlines()]
    assert (row["protocol"], row["geometry"], row["ap_metric"]) == ("release", "standard", None)
    assert row["dataset"] == "tiny-voc11+sbd segmentation train -> seg11valid"
    assert row["steps"] == 2 and row["images_per_step"] == 2 and row["crop"] is None
    assert row["colour_branch"] and row["input"] == "L - 50, and conv1_ab on 0.69308239 (a + b)"
    # VOC2011 train 4, plus SBD train's VOC2011 val image and its 4 SBD-only images; seg11valid: val less that one
    assert row["train_images"] == 4 + 1 + 4 and row["seg11valid_images"] == row["num_test_images"] == 3
    assert "crop at offset 0" in row["head"] and row["trainable_layers"][0] == "conv1"
    assert row["crop_offset"] == 0 and row["scores_aligned"] is False
    run_dir = tmp_path / "runs" / "voc-seg-random-alexnet-release"
    assert json.loads((run_dir / "results.json").read_text()) == [row]
    iou = iou_from_saved_predictions(run_dir, len(row["iou"]))
    assert list(row["iou"].values()) == [None if v is None else pytest.approx(v, abs=1e-3) for v in iou]
    assert row["miou"] == pytest.approx(np.mean([v for v in iou if v is not None]), abs=1e-3)
    assert "VOC11 segmentation (release: FCN-AlexNet, VOC2011 train + SBD train)" in run.stdout
    sections = {section.title: section for section in build_sections([ResultRow(1, row)])}
    text = "\n".join(sections["Pascal VOC segmentation"].lines)
    assert "release FCN-AlexNet, crop 0" in text and f"{row['miou']:.1f}" in text and "35.6" in text


def test_a_disk_without_sbd_is_a_one_line_error_naming_the_key(voc2011_sbd: Path, tmp_path: Path) -> None:
    data = VOC_SEG.load("seg11", [f"data.root={voc2011_sbd}"]).data
    assert resolve_release_seg_source(data).sbd_root == (voc2011_sbd / SBD_FOLDER).resolve()
    for root, sbd in ((voc2011_sbd, tmp_path), (tmp_path, None)):
        data = VOC_SEG.load(
            "seg11", [f"data.root={root}", f"data.sbd_root={sbd}" if sbd else "data.sbd_root=null"]
        ).data
        with pytest.raises(FileNotFoundError) as error:
            resolve_release_seg_source(data)
        message = str(error.value)
        assert "\n" not in message
        key = "'data.sbd_root' (SBD)" if sbd else "'data.root' (DATA)"
        assert message.startswith(f"config key {key}: {sbd or root} has no")
