import math

import torch

from lit_colorization.color.decode import AB_SCALE
from lit_colorization.pretrain.losses import ab_regression_loss, soft_cross_entropy
from lit_colorization.pretrain.schedules import PiecewiseConstant, step_schedule


def test_soft_cross_entropy_matches_dense_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 3, 4)
    indices = torch.stack([torch.randint(0, 7, (2, 3, 4)) for _ in range(3)], dim=1)
    weights = torch.softmax(torch.randn(2, 3, 3, 4), dim=1)
    dense = torch.zeros(2, 7, 3, 4).scatter_add_(1, indices, weights)
    expected = -(dense * torch.log_softmax(logits, dim=1)).sum(1).mean()
    loss = soft_cross_entropy(logits, indices, weights, torch.ones(2, 3, 4), torch.tensor([True, True]))
    assert torch.allclose(loss, expected, atol=1e-6)


def test_uniform_logits_give_log_q_and_gray_images_are_masked():
    logits = torch.zeros(2, 313, 2, 2)
    indices = torch.zeros(2, 1, 2, 2, dtype=torch.long)
    weights = torch.ones(2, 1, 2, 2)
    pixel_weights = torch.stack([torch.full((2, 2), 2.0), torch.full((2, 2), 100.0)])
    loss = soft_cross_entropy(logits, indices, weights, pixel_weights, torch.tensor([True, False]))
    # only the first image counts: its 4 pixels weigh 2, averaged over its 4 pixels
    assert math.isclose(loss.item(), 2 * math.log(313), rel_tol=1e-6)


def test_all_gray_batch_gives_zero_loss_with_gradient():
    logits = torch.randn(1, 5, 2, 2, requires_grad=True)
    loss = soft_cross_entropy(
        logits,
        torch.zeros(1, 1, 2, 2, dtype=torch.long),
        torch.ones(1, 1, 2, 2),
        torch.ones(1, 2, 2),
        torch.tensor([False]),
    )
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_regression_loss_closed_form():
    target = torch.full((1, 2, 2, 2), 22.0)
    predicted = torch.full((1, 2, 2, 2), 0.1)  # 11 in ab units: 11 off in a and in b
    loss = ab_regression_loss(predicted, target, torch.ones(1, 2, 2), torch.tensor([True]))
    assert math.isclose(loss.item(), 2 * (11 / AB_SCALE) ** 2, rel_tol=1e-5)


def test_piecewise_constant_schedule_follows_the_alexnet_recipe():
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-5)
    schedule = step_schedule(optimizer, 3e-5, [2, 4, 6], 0.1, [1e-5, 3e-6, 1e-6])
    lrs = []
    for _ in range(8):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    expected = [3e-5, 3e-5, 1e-5, 1e-5, 3e-6, 3e-6, 1e-6, 1e-6]
    assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(lrs, expected, strict=True))


def test_gamma_schedule_and_bad_milestones():
    factor = PiecewiseConstant([10], [0.1])
    assert factor(9) == 1.0 and factor(10) == 0.1
    try:
        PiecewiseConstant([5, 3], [0.1, 0.01])
    except ValueError as error:
        assert "increasing" in str(error)
    else:
        raise AssertionError("decreasing milestones accepted")
