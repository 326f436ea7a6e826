"""data.decode=gpu: JPEG bytes from workers, decoded and cropped on the device (here the CPU fallback)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data as skdata
from torch.utils.data import DataLoader

from lit_colorization.color import ab_bins
from lit_colorization.config.loading import load_config
from lit_colorization.config.schema import PretrainConfig
from lit_colorization.data import DataConfig, read_rgb, validate_data_config
from lit_colorization.data.crops import SQUASH, Resize
from lit_colorization.data.encoded import (
    CENTRE_CROP,
    DeviceCropper,
    EncodedCollate,
    EncodedImageFolderDataset,
    crop_boxes,
    is_plain_jpeg,
    read_payload,
    resized_crops,
)
from lit_colorization.data.images import UnreadableImageError
from lit_colorization.pretrain.module import ColorizationModule
from tests.helpers import bare_trainer

EXIF_ORIENTATION = 0x0112


def noise(height: int, width: int, seed: int) -> np.ndarray:
    # Noise, so that a crop one pixel off differs by far more than any decoder rounding.
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def rotated_exif() -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return exif.tobytes()


def make_folder(root: Path) -> dict[str, Path]:
    """One file per class folder, so a sample's label names its file whatever order the batch has."""
    files = {
        "a_rgb": ("x.jpg", jpeg_bytes(Image.fromarray(noise(45, 60, 0)))),
        "b_rgb420": ("x.jpg", jpeg_bytes(Image.fromarray(noise(50, 37, 1)), subsampling=2)),
        "c_gray": ("x.jpg", jpeg_bytes(Image.fromarray(noise(40, 40, 2)[..., 0]))),
        "d_png": ("x.png", None),
        "e_rotated": ("x.jpg", jpeg_bytes(Image.fromarray(noise(30, 50, 4)), exif=rotated_exif())),
    }
    paths = {}
    for name, (filename, payload) in files.items():
        path = root / "train" / name / filename
        path.parent.mkdir(parents=True)
        if payload is None:
            Image.fromarray(noise(30, 44, 3)).save(path)
        else:
            path.write_bytes(payload)
        paths[name] = path
    return paths


def expected_crop(path: Path, crop: torch.Tensor, size: int) -> torch.Tensor:
    """The crop cut from PIL's decoding of ``path`` (read_rgb) for the box ``crop_boxes`` gives."""
    pixels = read_rgb(path, strict=True)
    height, width = pixels.shape[:2]
    top, left, box_height, box_width = crop_boxes(
        torch.tensor([height]), torch.tensor([width]), crop[None], size, None
    )
    assert box_height.item() == box_width.item() == size
    window = pixels[int(top) : int(top) + size, int(left) : int(left) + size]
    window = window[:, ::-1] if crop[2] else window
    return torch.from_numpy(np.ascontiguousarray(window.transpose(2, 0, 1)))


@pytest.mark.parametrize("train", [True, False])
def test_device_crops_equal_pil_windows(tmp_path: Path, train: bool) -> None:
    paths = make_folder(tmp_path)
    dataset = EncodedImageFolderDataset(tmp_path, "train", train=train, seed=3)
    batch = EncodedCollate()([dataset[index] for index in range(len(dataset))])
    # Plain JPEGs (RGB, 4:2:0, gray) travel as bytes; the PNG and the EXIF-rotated JPEG as decoded pixels.
    assert len(batch["jpeg_lengths"]) == 3 and len(batch["pixels"]) == 2
    assert batch["label"].tolist() == [0, 1, 2, 3, 4]
    out = DeviceCropper(crop_size=24)(batch, "cpu")
    assert out["rgb"].shape == (5, 3, 24, 24) and out["rgb"].dtype == torch.uint8
    assert out["label"].tolist() == [0, 1, 2, 3, 4] and int(out["skipped"]) == 0
    for row, label in enumerate(out["label"].tolist()):
        path = paths[dataset.classes[label]]
        expected = expected_crop(path, batch["crop"][row], 24)
        # torchvision and PIL both decode with libjpeg-turbo: equal today, one level allowed for other builds.
        assert (out["rgb"][row].int() - expected.int()).abs().max() <= 1, path


def test_whole_factor_shrink_is_the_block_mean_of_pils_decoding(tmp_path: Path) -> None:
    path = tmp_path / "train" / "x.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(jpeg_bytes(Image.fromarray(noise(64, 80, 5))))
    dataset = EncodedImageFolderDataset(tmp_path, "train", train=True, seed=1)
    batch = EncodedCollate()([dataset[0]])
    # Shorter side 64 -> resize 32: the 16-pixel crop is a 32-pixel box, each output pixel a 2x2 block.
    out = DeviceCropper(crop_size=16, resize=Resize(32))(batch, "cpu")["rgb"][0]
    top, left, box_height, box_width = crop_boxes(
        torch.tensor([64]), torch.tensor([80]), batch["crop"], 16, Resize(32)
    )
    assert box_height.item() == box_width.item() == 32
    window = read_rgb(path, strict=True)[int(top) : int(top) + 32, int(left) : int(left) + 32]
    if batch["crop"][0, 2]:
        window = window[:, ::-1]
    reduced = np.asarray(Image.fromarray(np.ascontiguousarray(window)).reduce(2)).transpose(2, 0, 1)
    assert np.abs(out.numpy().astype(int) - reduced.astype(int)).max() <= 1


def test_crop_boxes_place_every_whole_position_once() -> None:
    heights, widths = torch.tensor([45.0]), torch.tensor([60.0])
    free_rows = 45 - 24 + 1
    fractions = (torch.arange(free_rows, dtype=torch.float64) + 0.5) / free_rows
    crops = torch.stack([fractions, fractions, torch.zeros(free_rows)], dim=1)
    top, left, side, _ = crop_boxes(heights.expand(free_rows), widths.expand(free_rows), crops, 24, None)
    assert top.tolist() == list(range(free_rows)) and side.unique().tolist() == [24.0]
    assert left.min() == 0 and left.max() <= 60 - 24
    extreme = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], list(CENTRE_CROP)], dtype=torch.float64)
    top, left, _, _ = crop_boxes(heights.expand(3), widths.expand(3), extreme, 24, None)
    assert top.tolist() == [0, 21, 11] and left.tolist() == [0, 36, 18]


def test_crop_boxes_scale_like_the_cpu_path() -> None:
    heights, widths = torch.tensor([20.0, 64.0, 64.0]), torch.tensor([30.0, 80.0, 80.0])
    crop = torch.tensor([CENTRE_CROP] * 3, dtype=torch.float64)
    _, _, side, _ = crop_boxes(heights[:1], widths[:1], crop[:1], 24, None)
    assert side.tolist() == [20.0]  # smaller than the crop: the whole shorter side, scaled up
    _, _, side, _ = crop_boxes(heights[1:], widths[1:], crop[1:], 16, Resize(32))
    assert side.tolist() == [32.0, 32.0]  # shorter side 64 -> 32 px, of which the crop takes 16
    _, _, side, _ = crop_boxes(heights[1:2], widths[1:2], crop[1:2], 16, Resize(8))
    assert side.tolist() == [64.0]  # resize below the crop size: scaled up to the crop, as the CPU path does
    box = crop_boxes(heights[1:2], widths[1:2], crop[1:2], 16, Resize(32, SQUASH))
    assert [value.item() for value in box] == [16.0, 20.0, 32.0, 40.0]  # 64x80 -> 32x32: 16 px is 32x40 of it
    _, _, box_height, box_width = crop_boxes(heights[1:2], widths[1:2], crop[1:2], 16, Resize(8, SQUASH))
    assert (box_height.item(), box_width.item()) == (64.0, 80.0)  # squashed below the crop: all of the photo


def gradient_image(height: int, width: int) -> torch.Tensor:
    rows = torch.arange(height)[:, None].expand(height, width)
    cols = torch.arange(width)[None, :].expand(height, width)
    return torch.stack([cols, rows, 255 - cols]).to(torch.uint8)


@pytest.mark.parametrize("side", [7.0, 24.0, 37.5, 60.0, 130.0])
def test_resized_crops_sample_the_centre_of_each_output_pixel(side: float) -> None:
    # On a linear ramp every average of symmetric taps is the ramp at the output pixel's centre.
    image = gradient_image(200, 250)
    top, left, size = 20.0, 30.0, 12
    box = torch.tensor([side])
    out = resized_crops([image], torch.tensor([top]), torch.tensor([left]), box, box, torch.zeros(1), size)
    centres = torch.arange(size, dtype=torch.float64) + 0.5
    expected_cols = (left + centres * side / size - 0.5).round()
    expected_rows = (top + centres * side / size - 0.5).round()
    assert (out[0, 0].double() - expected_cols[None, :]).abs().max() <= 1
    assert (out[0, 1].double() - expected_rows[:, None]).abs().max() <= 1
    assert (out[0, 2].double() - (255 - expected_cols[None, :])).abs().max() <= 1


def test_resized_crops_enlarge_like_bilinear_interpolation_and_mirror() -> None:
    image = torch.from_numpy(noise(10, 10, 6).transpose(2, 0, 1).copy())
    zero, ten = torch.zeros(1), torch.tensor([10.0])
    plain = resized_crops([image], zero, zero, ten, ten, torch.zeros(1), 25)[0]
    mirrored = resized_crops([image], zero, zero, ten, ten, torch.ones(1), 25)[0]
    reference = F.interpolate(image[None].float(), size=(25, 25), mode="bilinear", align_corners=False)[0]
    assert (plain.float() - reference).abs().max() <= 0.5 + 1e-4
    assert torch.equal(mirrored, plain.flip(-1))


def test_images_of_different_sizes_are_cropped_in_one_batch() -> None:
    images = [
        torch.from_numpy(noise(h, w, h).transpose(2, 0, 1).copy()) for h, w in [(40, 50), (64, 33), (16, 16)]
    ]
    top, left = torch.tensor([3.0, 10.0, 0.0]), torch.tensor([5.0, 2.0, 0.0])
    box = torch.full((3,), 16.0)
    out = resized_crops(images, top, left, box, box, torch.tensor([0.0, 1.0, 0.0]), 16)
    for row, image in enumerate(images):
        window = image[:, int(top[row]) : int(top[row]) + 16, int(left[row]) : int(left[row]) + 16]
        assert torch.equal(out[row], window.flip(-1) if row == 1 else window)


def test_crop_numbers_come_from_seed_epoch_and_index(tmp_path: Path) -> None:
    make_folder(tmp_path)
    first = EncodedImageFolderDataset(tmp_path, "train", seed=7)
    again = EncodedImageFolderDataset(tmp_path, "train", seed=7)
    other_seed = EncodedImageFolderDataset(tmp_path, "train", seed=8)
    numbers = torch.stack([first.crop_numbers(i) for i in range(5)])
    assert torch.equal(numbers, torch.stack([again.crop_numbers(i) for i in range(5)]))
    assert not torch.equal(numbers, torch.stack([other_seed.crop_numbers(i) for i in range(5)]))
    first.set_epoch(1)
    assert not torch.equal(numbers, torch.stack([first.crop_numbers(i) for i in range(5)]))
    assert ((numbers[:, :2] >= 0) & (numbers[:, :2] < 1)).all() and set(numbers[:, 2].tolist()) <= {0.0, 1.0}
    mirrored = torch.stack([first.crop_numbers(i)[2] for i in range(400)]).mean()
    assert 0.4 < mirrored < 0.6
    validation = EncodedImageFolderDataset(tmp_path, "train", train=False)
    assert validation.crop_numbers(3).tolist() == list(CENTRE_CROP)


def test_device_crops_repeat_exactly(tmp_path: Path) -> None:
    make_folder(tmp_path)
    dataset = EncodedImageFolderDataset(tmp_path, "train", seed=2)
    crops = [
        DeviceCropper(24)(EncodedCollate()([dataset[i] for i in range(5)]), "cpu")["rgb"] for _ in range(2)
    ]
    assert torch.equal(crops[0], crops[1])


def test_plain_jpeg_detection() -> None:
    rgb = Image.fromarray(noise(20, 30, 0))
    assert is_plain_jpeg(jpeg_bytes(rgb)) and is_plain_jpeg(jpeg_bytes(rgb.convert("L")))
    assert not is_plain_jpeg(jpeg_bytes(rgb.convert("CMYK")))
    assert not is_plain_jpeg(jpeg_bytes(rgb, exif=rotated_exif()))
    png = io.BytesIO()
    rgb.save(png, "PNG")
    assert not is_plain_jpeg(png.getvalue())
    assert not is_plain_jpeg(b"\xff\xd8\xff" + b"not a jpeg" * 10)


def test_unreadable_files_are_skipped_or_raise_when_strict(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert read_payload(str(tmp_path / "missing.jpg")) is None and read_payload(str(empty)) is None
    with pytest.raises(UnreadableImageError, match="missing.jpg"):
        read_payload(str(tmp_path / "missing.jpg"), strict=True)


def test_a_jpeg_the_decoder_rejects_leaves_the_batch_and_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = jpeg_bytes(Image.fromarray(noise(30, 30, 1)))
    truncated = good[: len(good) // 2]  # the header is intact, so only the decoder finds out
    assert is_plain_jpeg(truncated)
    to_tensor = lambda raw: torch.frombuffer(bytearray(raw), dtype=torch.uint8)  # noqa: E731
    samples = [
        (to_tensor(truncated), torch.tensor(CENTRE_CROP), 5, "class5/truncated.jpg"),
        (to_tensor(good), torch.tensor(CENTRE_CROP), 6, "class6/good.jpg"),
    ]
    batch = EncodedCollate()([*samples, None])
    with caplog.at_level(logging.WARNING, logger="lit_colorization.data.encoded"):
        out = DeviceCropper(16)(batch, "cpu")
    assert out["rgb"].shape == (1, 3, 16, 16) and out["label"].tolist() == [6] and int(out["skipped"]) == 2
    assert [record.getMessage() for record in caplog.records] == [
        "skipping unreadable image class5/truncated.jpg: the JPEG decoder on cpu could not decode it"
    ]
    with pytest.raises(
        UnreadableImageError, match=r"^unreadable image class5/truncated.jpg: the JPEG decoder"
    ):
        DeviceCropper(16, strict=True)(EncodedCollate()(samples), "cpu")
    nothing = DeviceCropper(16)(EncodedCollate()([None]), "cpu")
    assert nothing["rgb"].shape == (0, 3, 16, 16) and int(nothing["skipped"]) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (nvJPEG)")
@pytest.mark.parametrize(
    ("picture", "subsampling", "mean_limit"),
    [
        # Full-resolution chroma: only the IDCT and colour conversion differ, so noise (where a crop one pixel
        # off would differ by ~85 levels on average) shows the boxes are the same.
        ("noise", 0, 2.0),
        # Half-resolution chroma: nvJPEG and libjpeg-turbo upsample it differently. On noise that alone moves
        # every pixel by several levels (5.1 on an H200 with torchvision 0.26), so a photo is compared.
        ("photo", 2, 2.0),
    ],
)
def test_nvjpeg_crops_match_the_cpu_decoder(
    tmp_path: Path, picture: str, subsampling: int, mean_limit: float
) -> None:
    photo = skdata.astronaut()[::4, ::4]
    for index, (height, width) in enumerate([(45, 60), (50, 37), (64, 64)]):
        pixels = noise(height, width, index) if picture == "noise" else photo[:height, 20 : 20 + width]
        path = tmp_path / "train" / f"class{index}" / "x.jpg"
        path.parent.mkdir(parents=True)
        path.write_bytes(jpeg_bytes(Image.fromarray(np.ascontiguousarray(pixels)), subsampling=subsampling))
    dataset = EncodedImageFolderDataset(tmp_path, "train", seed=4)
    batch = EncodedCollate()([dataset[index] for index in range(len(dataset))])
    on_gpu = DeviceCropper(24)(dict(batch), "cuda")
    on_cpu = DeviceCropper(24)(dict(batch), "cpu")
    assert on_gpu["rgb"].is_cuda and torch.equal(on_gpu["label"].cpu(), on_cpu["label"])
    difference = (on_gpu["rgb"].cpu().float() - on_cpu["rgb"].float()).abs()
    per_image = [f"mean {d.mean():.2f} max {d.max():.0f}" for d in difference]
    assert difference.mean() < mean_limit and difference.max() <= 64, per_image


def test_lightning_fit_trains_on_device_decoded_jpegs(tmp_path: Path) -> None:
    for index in range(6):
        path = tmp_path / "train" / f"{index}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(jpeg_bytes(Image.fromarray(noise(40 + index, 48, index))))
    config = load_config(
        PretrainConfig,
        overrides=[
            "model.kwargs.width=0.125",
            "data.crop_size=32",
            "data.decode=gpu",
            "num_val_images_logged=0",
        ],
    )
    bins = ab_bins()
    module = ColorizationModule(config, bins, torch.full((bins.shape[0],), 1.0 / bins.shape[0]))
    loader = DataLoader(
        EncodedImageFolderDataset(tmp_path, "train"), batch_size=3, collate_fn=EncodedCollate()
    )
    seen: list[tuple[int, ...]] = []
    original_step = module.training_step

    def recording_step(batch, batch_idx):
        seen.append(tuple(batch["rgb"].shape))
        return original_step(batch, batch_idx)

    module.training_step = recording_step
    trainer = bare_trainer(max_steps=2)
    before = [parameter.detach().clone() for parameter in module.net.parameters()]
    trainer.fit(module, train_dataloaders=loader)
    assert seen == [(3, 3, 32, 32), (3, 3, 32, 32)]
    assert any(not torch.equal(b, a) for b, a in zip(before, module.net.parameters(), strict=True))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"decode": "nvjpeg"}, "data.decode must be one of cpu, gpu"),
        ({"decode": "gpu"}, "needs data.source=folder"),
    ],
)
def test_data_decode_setting_is_checked(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_data_config(DataConfig(source="embedded", **overrides))
