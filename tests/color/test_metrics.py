"""AuC of the ab error and Hasler-Suesstrunk colourfulness against closed forms and direct numpy versions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data

from lit_colorization.color.metrics import auc, auc_curve, colorfulness


def random_ab(seed: int, shape=(2, 2, 6, 7)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 200 - 100


def shifted(ab: torch.Tensor, da: float, db: float) -> torch.Tensor:
    return ab + torch.tensor([da, db]).view(1, 2, 1, 1)


def test_perfect_prediction_scores_one():
    ab = random_ab(0)
    assert auc(ab, ab).item() == 1.0
    assert torch.equal(auc_curve(ab, ab), torch.ones(151))


@pytest.mark.parametrize("multiple", [0, 1, 2, 10, 30])
def test_constant_integer_error_closed_form(multiple):
    # Offsets (3m, 4m) on integer ab give an exact error e = 5m in every pixel. It is within t for the
    # thresholds t = e..150, so AuC = (150 - e + 1) / (150 + 1).
    true = torch.randint(-100, 100, (2, 2, 5, 6), generator=torch.Generator().manual_seed(1)).float()
    error = 5 * multiple
    pred = shifted(true, 3 * multiple, 4 * multiple)
    assert auc(pred, true).item() == pytest.approx((150 - error + 1) / 151, abs=1e-7)
    curve = auc_curve(pred, true)
    assert torch.equal(curve, (torch.arange(151) >= error).float())


def test_constant_error_with_another_max_threshold_and_beyond_it():
    true = torch.zeros(1, 2, 3, 3)
    assert auc(shifted(true, 6, 8), true, max_threshold=40).item() == pytest.approx((40 - 10 + 1) / 41)
    assert auc(shifted(true, 120, 160), true).item() == 0.0  # error 200 > 150
    assert auc(shifted(true, 0.3, 0.4), true).item() == pytest.approx(150 / 151)  # 0.5: within t >= 1


def test_weights_select_the_pixels_that_count():
    true = torch.zeros(1, 2, 2, 4)
    pred = true.clone()
    pred[0, 0, 1] = 200.0  # second row wrong by 200, beyond every threshold
    right_row = torch.tensor([[1.0] * 4, [0.0] * 4]).unsqueeze(0)
    assert auc(pred, true).item() == pytest.approx(0.5)
    assert auc(pred, true, weights=right_row).item() == pytest.approx(1.0)
    assert auc(pred, true, weights=1 - right_row).item() == pytest.approx(0.0)
    assert auc(pred, true, weights=3 * right_row + 1).item() == pytest.approx(0.8)


def test_curve_matches_a_direct_count():
    pred, true = random_ab(2), random_ab(3)
    weights = torch.rand(2, 6, 7, generator=torch.Generator().manual_seed(4))
    error = np.sqrt(((pred - true).double().numpy() ** 2).sum(axis=1)).reshape(-1)
    w = weights.double().numpy().reshape(-1)
    within = error[:, None] <= np.arange(151)[None, :]
    assert np.abs(auc_curve(pred, true).numpy() - within.mean(axis=0)).max() < 1e-6
    weighted = (w[:, None] * within).sum(axis=0) / w.sum()
    assert np.abs(auc_curve(pred, true, weights=weights).numpy() - weighted).max() < 1e-6
    assert auc(pred, true, weights=weights).item() == pytest.approx(weighted.mean(), abs=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: auc(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 4)), "expected"),
        (lambda: auc(torch.zeros(1, 3, 3, 3), torch.zeros(1, 3, 3, 3)), "B x 2 x H x W"),
        (lambda: auc(torch.zeros(0, 2, 3, 3), torch.zeros(0, 2, 3, 3)), "no pixels"),
        (
            lambda: auc(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3), weights=torch.ones(1, 3)),
            "B x H x W",
        ),
        (
            lambda: auc(
                torch.zeros(1, 2, 1, 2), torch.zeros(1, 2, 1, 2), weights=torch.tensor([[[1.0, -1.0]]])
            ),
            "non-negative",
        ),
        (
            lambda: auc(torch.zeros(1, 2, 1, 2), torch.zeros(1, 2, 1, 2), weights=torch.zeros(1, 1, 2)),
            "positive sum",
        ),
        (
            lambda: auc(torch.zeros(1, 2, 1, 2), torch.zeros(1, 2, 1, 2), max_threshold=-1),
            "non-negative integer",
        ),
    ],
)
def test_bad_auc_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_gray_images_have_zero_colourfulness():
    gray = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(5)).expand(3, 3, 8, 8)
    assert torch.allclose(colorfulness(gray), torch.zeros(3), atol=1e-4)


def test_colourfulness_closed_forms():
    red = torch.zeros(2, 3, 4, 4)
    red[:, 0] = 1.0
    red[1, :, 2:] = 0.0  # second image: half pure red, half black
    # Uniform red: rg = 255, yb = 127.5, no spread -> 0.3 * sqrt(255^2 + 127.5^2) = 0.3 * 127.5 * sqrt(5).
    # Half red, half black: rg, yb alternate (255, 0), (127.5, 0): std = mean = 63.75 * sqrt(5) -> 1.3 times it.
    expected = [0.3 * 127.5 * math.sqrt(5), 1.3 * 63.75 * math.sqrt(5)]
    assert colorfulness(red).tolist() == pytest.approx(expected, rel=1e-6)
    assert colorfulness((red * 255).to(torch.uint8)).tolist() == pytest.approx(expected, rel=1e-6)


def test_colourfulness_matches_numpy_on_a_photo():
    photo = data.astronaut()[::4, ::4].astype(np.float64)
    rg = photo[..., 0] - photo[..., 1]
    yb = 0.5 * (photo[..., 0] + photo[..., 1]) - photo[..., 2]
    expected = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    rgb = torch.from_numpy(photo / 255).permute(2, 0, 1).unsqueeze(0)
    assert colorfulness(rgb).item() == pytest.approx(expected, rel=1e-9)


def test_colourfulness_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        colorfulness(torch.zeros(1, 1, 4, 4))
