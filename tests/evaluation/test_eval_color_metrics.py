"""evaluation/scoring.py (and tables.py): per-image colorization scores on hand-built cases, closed forms and
scikit-image references."""

import math

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lit_colorization.color import ab_bins, uint8_to_lab
from lit_colorization.color.metrics import auc, colorfulness
from lit_colorization.color.pictures import lab_batch_to_rgb
from lit_colorization.color.targets import ColorTargetBuilder
from lit_colorization.evaluation.scoring import (
    PSNR_CAP_DB,
    PerImageColumns,
    per_image_auc,
    per_image_psnr,
    per_image_ssim,
    rank_examples,
    score_colorization,
    summarize_quality,
    weighted_mean,
)
from lit_colorization.evaluation.tables import format_value, markdown_table


def _rebalancing(prior):
    """The targets whose rebalancing weights evaluation and training share (the grid does not matter here)."""
    return ColorTargetBuilder(ab_bins(), prior, stride=4)


def _bin_index(bins, a, b):
    return int(torch.nonzero((bins[:, 0] == a) & (bins[:, 1] == b)).item())


def _two_tone_ab(height=6, width=8):
    """Float32 like real Lab. Top half ab = (3, 4) (|ab| = 5, nearest bin (0, 0)); bottom half (12, 16) (|ab| = 20, nearest (10, 20))."""
    ab = torch.zeros(1, 2, height, width)
    ab[:, 0, : height // 2], ab[:, 1, : height // 2] = 3.0, 4.0
    ab[:, 0, height // 2 :], ab[:, 1, height // 2 :] = 12.0, 16.0
    return ab


def test_gray_baseline_auc_is_the_closed_form():
    true_ab = _two_tone_ab()
    values, masses = per_image_auc(torch.zeros_like(true_ab), true_ab, torch.tensor([True]))
    # A constant error e (integer) is within t for the 151 - e thresholds t >= e of 0..150.
    expected = 0.5 * ((151 - 5) / 151 + (151 - 20) / 151)
    assert values.item() == pytest.approx(expected, abs=1e-6)
    assert masses.item() == 6 * 8


def test_rebalanced_gray_auc_weights_pixels_by_their_true_bin():
    bins = ab_bins()
    targets = _rebalancing(torch.arange(1.0, bins.shape[0] + 1.0))  # a different weight for every bin
    class_weights = targets.metric_weights.double()
    true_ab = _two_tone_ab()
    pixel_weights = targets.metric_weights_for(true_ab).double()
    low, high = class_weights[_bin_index(bins, 0, 0)], class_weights[_bin_index(bins, 10, 20)]
    assert torch.equal(pixel_weights[0, :3], torch.full((3, 8), low.item(), dtype=torch.float64))
    assert torch.equal(pixel_weights[0, 3:], torch.full((3, 8), high.item(), dtype=torch.float64))
    values, masses = per_image_auc(torch.zeros_like(true_ab), true_ab, torch.tensor([True]), pixel_weights)
    expected = (low * 146 / 151 + high * 131 / 151) / (low + high)
    assert values.item() == pytest.approx(expected.item(), abs=1e-6)
    assert masses.item() == pytest.approx(24 * (low + high).item())


def test_unscored_images_get_nan_and_no_mass():
    true_ab = torch.cat([_two_tone_ab(), _two_tone_ab()])
    values, masses = per_image_auc(torch.zeros_like(true_ab), true_ab, torch.tensor([False, True]))
    assert math.isnan(values[0].item()) and masses[0].item() == 0
    assert masses[1].item() == 48


def _photo_batch():
    """Two 48 x 48 crops of the astronaut as uint8 -> (lightness, true ab, uint8 RGB)."""
    image = torch.from_numpy(skdata.astronaut()[100:196:2, 150:246:2].copy()).permute(2, 0, 1)
    rgb = torch.stack([image, image.flip(-1)])
    lab = uint8_to_lab(rgb)
    return lab[:, :1], lab[:, 1:], rgb


def test_a_perfect_colorizer_scores_auc_1_ssim_1_psnr_capped_and_no_colourfulness_gap():
    lightness, true_ab, _ = _photo_batch()
    true_rgb = lab_batch_to_rgb(lightness, true_ab)
    weights = _rebalancing(torch.rand(ab_bins().shape[0]) + 0.1).metric_weights_for(true_ab)
    scores, pred_rgb = score_colorization(
        lightness, true_ab.clone(), true_ab, true_rgb, torch.tensor([True, True]), weights, with_fidelity=True
    )
    assert torch.equal(pred_rgb, true_rgb)
    assert torch.equal(scores["auc"], torch.ones(2, dtype=torch.float64))
    assert torch.allclose(scores["auc_rebal"], torch.ones(2, dtype=torch.float64))
    assert torch.equal(scores["psnr"], torch.full((2,), PSNR_CAP_DB, dtype=torch.float64))
    assert torch.allclose(scores["ssim"], torch.ones(2, dtype=torch.float64))
    columns = PerImageColumns()
    columns.append(scores)
    summary = summarize_quality(columns)
    assert summary["auc"] == 100 and summary["auc_rebal"] == pytest.approx(100)
    assert summary["colorfulness"] == pytest.approx(colorfulness(true_rgb).double().mean().item())


def test_psnr_and_ssim_match_scikit_image():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 40, 40, generator=generator, dtype=torch.float64)
    noisy = (target + 0.1 * torch.rand(2, 3, 40, 40, generator=generator, dtype=torch.float64)).clamp(0, 1)
    psnr, ssim = per_image_psnr(noisy, target), per_image_ssim(noisy, target)
    for image in range(2):
        expected_psnr = peak_signal_noise_ratio(target[image].numpy(), noisy[image].numpy(), data_range=1.0)
        expected_ssim = structural_similarity(
            target[image].numpy(),
            noisy[image].numpy(),
            data_range=1.0,
            channel_axis=0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert psnr[image].item() == pytest.approx(expected_psnr, abs=1e-5)
        # The two differ only in how the border of the 11 x 11 window is handled.
        assert ssim[image].item() == pytest.approx(expected_ssim, abs=1e-3)


def test_the_set_level_auc_equals_the_auc_of_all_pixels_pooled():
    lightness, true_ab, rgb = _photo_batch()
    generator = torch.Generator().manual_seed(1)
    pred_ab = true_ab + 25 * torch.randn(true_ab.shape, generator=generator)
    prior = torch.rand(ab_bins().shape[0], generator=generator) + 0.05
    weights = _rebalancing(prior).metric_weights_for(true_ab)
    columns = PerImageColumns()
    for image in range(2):  # one image per batch: the summary must pool them exactly
        part = slice(image, image + 1)
        scores, _ = score_colorization(
            lightness[part],
            pred_ab[part],
            true_ab[part],
            rgb[part].double() / 255,
            torch.tensor([True]),
            weights[part],
            with_fidelity=False,
        )
        columns.append(scores)
    summary = summarize_quality(columns)
    assert summary["auc"] == pytest.approx(100 * auc(pred_ab, true_ab).item(), abs=1e-4)
    assert summary["auc_rebal"] == pytest.approx(
        100 * auc(pred_ab, true_ab, weights=weights).item(), abs=1e-4
    )
    assert summary["psnr"] is None and summary["ssim"] is None


def test_weighted_mean_ignores_weightless_entries():
    assert weighted_mean(torch.tensor([math.nan, 2.0, 4.0]), torch.tensor([0.0, 1.0, 3.0])) == pytest.approx(
        3.5
    )
    assert weighted_mean(torch.tensor([math.nan]), torch.tensor([0.0])) is None


def test_rank_examples_best_worst_median_skip_nan():
    values = torch.tensor([0.5, math.nan, 0.9, 0.1, 0.7, 0.3], dtype=torch.float64)
    ranks = rank_examples(values, 2)
    assert ranks == {"best": [2, 4], "worst": [3, 5], "median": [4, 0]}
    assert rank_examples(values, 10)["best"] == [2, 4, 0, 5, 3]
    with pytest.raises(ValueError, match="count must be >= 0"):
        rank_examples(values, -1)


def test_markdown_table_pads_columns_and_formats_missing_values():
    table = markdown_table(["a", "value"], [["gray", format_value(1.23456)], ["x", format_value(None)]])
    assert table.splitlines() == [
        "| a    | value |",
        "|------|-------|",
        "| gray | 1.23  |",
        "| x    | n/a   |",
    ]
    assert np.isclose(float(format_value(0.123456, 4)), 0.1235)
