"""``colorize`` through the CLI: full resolution out, the input's own lightness kept, official weights accepted."""

import numpy as np
import torch
from PIL import Image
from skimage.color import rgb2lab

from lit_colorization.models import create_model
from tests.helpers import run_module


def _write_inputs(folder):
    rng = np.random.default_rng(0)
    (folder / "nested").mkdir(parents=True)
    colour = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    Image.fromarray(colour).save(folder / "colour.png")
    gray = rng.integers(0, 256, (40, 30), dtype=np.uint8)
    Image.fromarray(gray).save(folder / "nested" / "gray.jpg")
    return colour, gray


def _lightness(rgb_uint8):
    return rgb2lab(rgb_uint8.astype(np.float64) / 255)[..., 0]


def test_colorize_keeps_size_and_lightness(tiny_pretrain_run, tmp_path):
    colour, _ = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    ckpt = tiny_pretrain_run / "checkpoints" / "last.ckpt"
    result = run_module(
        "lit_colorization.cli.colorize",
        "--ckpt",
        str(ckpt),
        "--out",
        str(out),
        "--size",
        "32",
        str(tmp_path / "in"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    colour_out = np.asarray(Image.open(out / "colour.png").convert("RGB"))
    gray_out = np.asarray(Image.open(out / "nested" / "gray.png").convert("RGB"))
    assert colour_out.shape == colour.shape and gray_out.shape == (40, 30, 3)
    # Same L up to 8-bit rounding, except where L + predicted ab falls outside the sRGB gamut and is clipped.
    difference = np.abs(_lightness(colour_out) - _lightness(colour))
    in_gamut = ((colour_out > 0) & (colour_out < 255)).all(axis=2)
    assert in_gamut.mean() > 0.8
    assert difference[in_gamut].max() < 1.0 and difference.mean() < 0.3
    # A second call keeps what exists; --overwrite redoes it.
    again = run_module(
        "lit_colorization.cli.colorize", "--ckpt", str(ckpt), "--out", str(out), str(tmp_path / "in")
    )
    assert "kept 2 existing" in again.stdout


def _official_state_dict(network) -> dict:
    """Our eccv16 weights in the authors' released key layout, with ab divided by 110 (docs/reference.md 1, 4)."""
    renamed = {}
    for key, value in network.state_dict().items():
        block, rest = key.split(".", 1)
        if block.startswith("conv"):
            renamed[f"model{block[4:]}.{rest}"] = value
        elif block == "logits":
            renamed[f"model8.6.{rest}"] = value
        elif block == "decode":
            renamed[f"model_out.{rest}"] = value / 110
    return renamed


def test_colorize_accepts_the_official_eccv16_layout(tmp_path):
    torch.manual_seed(0)
    official = _official_state_dict(create_model("eccv16"))
    assert "model8.6.weight" in official and "model_out.weight" in official and "model1.0.weight" in official
    weights = tmp_path / "colorization_release_v2.pth"
    torch.save(official, weights)
    _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    result = run_module(
        "lit_colorization.cli.colorize",
        "--ckpt",
        str(weights),
        "--weights-format",
        "official",
        "--out",
        str(out),
        "--size",
        "64",
        str(tmp_path / "in" / "colour.png"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.asarray(Image.open(out / "colour.png")).shape == (37, 53, 3)


def test_colorize_errors_name_the_file(tmp_path, tiny_pretrain_run):
    missing = run_module(
        "lit_colorization.cli.colorize",
        "--ckpt",
        str(tmp_path / "nope.ckpt"),
        "--out",
        str(tmp_path),
        str(tmp_path),
    )
    assert missing.returncode == 2 and "nope.ckpt" in missing.stderr and "Traceback" not in missing.stderr
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((tiny_pretrain_run / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    result = run_module(
        "lit_colorization.cli.colorize", "--ckpt", str(truncated), "--out", str(tmp_path), str(tmp_path)
    )
    assert result.returncode == 2 and "truncated.ckpt" in result.stderr and "Traceback" not in result.stderr
