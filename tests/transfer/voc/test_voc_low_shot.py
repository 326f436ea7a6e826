"""Low-shot VOC07 SVMs: the per-class draws, the cost chosen over the draws, mean and spread per k, and
`python -m transfer.cli.voc_cls protocol=svm low_shot=true` end to end with its plot and compare section."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from lit_colorization.color import ab_bins
from lit_colorization.config.loading import ConfigError
from lit_colorization.models import create_model
from lit_colorization.store.checkpoint import write_checkpoint
from lit_colorization.store.results import SCHEMA, ResultRow
from tests.helpers import read_plot, run_module
from tests.transfer.voc.devkit_reference import classification_ap_percent
from transfer.compare import build_sections, latest_of_each_run
from transfer.voc.low_shot import LowShotResult, draw_low_shot, low_shot_svms
from transfer.voc.svm import FeatureSet
from transfer.voc.voc_config import VOC_CLS


def _features(num_images: int, num_classes: int, seed: int, noise: float = 0.05) -> FeatureSet:
    """Class c present <=> feature c is 1, plus a constant and noise; a few difficult-only entries; rows
    normalised."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((num_images, num_classes)) < 0.3).astype(np.float32)
    targets[: 3 * num_classes] = np.tile(np.eye(num_classes, dtype=np.float32), (3, 1))
    ignore = np.zeros_like(targets, dtype=bool)
    ignore[3 * num_classes : 3 * num_classes + 4, 0] = True
    targets[ignore] = 0
    constant = np.ones((num_images, 1))  # keeps images of no class off the origin
    features = np.concatenate([targets, constant, noise * rng.random((num_images, 8))], axis=1).astype(
        np.float32
    )
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return FeatureSet(features, targets, ignore)


def test_each_class_draws_k_clear_positives_and_classes_minus_one_times_k_negatives() -> None:
    train = _features(200, 4, seed=0)
    draw = draw_low_shot(train, 5, np.random.default_rng(0))
    for column, (positives, negatives) in enumerate(zip(draw.positives, draw.negatives, strict=True)):
        assert len(positives) == 5 and len(negatives) == 3 * 5
        assert len(set(positives)) == 5 and len(set(negatives)) == 15  # without replacement
        assert (train.targets[positives, column] == 1).all() and (train.targets[negatives, column] == 0).all()
        assert not train.ignore[np.concatenate([positives, negatives]), column].any()
    # Each class draws on its own: the classes' positive sets are not one shared sample of images.
    assert len({tuple(positives) for positives in draw.positives}) == 4
    again = draw_low_shot(train, 5, np.random.default_rng(0))
    other = draw_low_shot(train, 5, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(draw.positives, again.positives, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(draw.positives, other.positives, strict=True))


def test_a_class_short_of_k_uses_all_it_has() -> None:
    train = _features(40, 3, seed=1)
    available = [int(((train.targets[:, c] == 1) & ~train.ignore[:, c]).sum()) for c in range(3)]
    negatives = [int(((train.targets[:, c] == 0) & ~train.ignore[:, c]).sum()) for c in range(3)]
    draw = draw_low_shot(train, 1000, np.random.default_rng(0))
    assert [len(p) for p in draw.positives] == available
    assert [len(n) for n in draw.negatives] == negatives
    # Short of negatives only: k is met, the draw is still not the protocol's.
    fields = {"cost": 1.0, "map_per_draw": [0.5], "map_by_cost": {1.0: 0.5}}
    short_negatives = LowShotResult(k=2, positives_used=[2, 2, 2], negatives_used=[4, 3, 4], **fields)
    assert short_negatives.k_effective == 2 and not short_negatives.complete
    assert LowShotResult(k=2, positives_used=[2, 2, 2], negatives_used=[4, 4, 4], **fields).complete


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cost_is_the_best_mean_over_draws_and_the_spread_is_over_the_draws() -> None:
    train, test = _features(120, 3, seed=2, noise=0.6), _features(60, 3, seed=3, noise=0.6)
    results = low_shot_svms(train, test, [1, 4], 3, [0.01, 1.0, 100.0], 2.0, 2000, ap_metric="area")
    assert [result.k for result in results] == [1, 4]
    for result in results:
        assert len(result.map_per_draw) == 3 and list(result.map_by_cost) == [0.01, 1.0, 100.0]
        assert result.cost == max(result.map_by_cost, key=lambda cost: result.map_by_cost[cost])
        assert result.map == pytest.approx(result.map_by_cost[result.cost])
        assert result.map_std == pytest.approx(np.std(result.map_per_draw))
        assert (
            result.k_effective == result.k and result.negatives_used == [2 * result.k] * 3 and result.complete
        )
    # Draw s of k is seeded (seed, k, s): running k alone gives the same numbers.
    [alone] = low_shot_svms(train, test, [4], 3, [0.01, 1.0, 100.0], 2.0, 2000, ap_metric="area")
    assert alone.map_per_draw == results[1].map_per_draw
    clean_train, clean_test = _features(120, 3, seed=2, noise=0.0), _features(60, 3, seed=3, noise=0.0)
    [separable] = low_shot_svms(clean_train, clean_test, [2], 2, [1.0], 2.0, 2000, ap_metric="area")
    assert separable.map == pytest.approx(1.0) and separable.map_std == pytest.approx(0.0)


def test_low_shot_needs_the_svm_protocol_and_valid_ks() -> None:
    assert VOC_CLS.load(None, ["protocol=svm", "low_shot=true"]).svm.low_shot_k == [
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        96,
    ]
    with pytest.raises(ConfigError, match="'low_shot'"):
        VOC_CLS.load(None, ["low_shot=true"])
    with pytest.raises(ConfigError, match="'svm.low_shot_k'"):
        VOC_CLS.load(None, ["protocol=svm", "low_shot=true", "svm.low_shot_k=[4,2]"])
    with pytest.raises(ConfigError, match="'svm.low_shot_samples'"):
        VOC_CLS.load(None, ["protocol=svm", "low_shot=true", "svm.low_shot_samples=0"])


def test_cli_writes_a_row_per_k_a_plot_and_a_compare_section(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ckpt = write_checkpoint(
        tmp_path / "pre" / "checkpoints" / "last.ckpt",
        create_model("alexnet", width=0.125),
        ab_bins(),
        None,
        {"run": "tiny-pretrain"},
    )
    results = tmp_path / "results.jsonl"
    run = run_module(
        "transfer.cli.voc_cls",
        f"ckpt={ckpt}",
        f"runs_dir={tmp_path / 'runs'}",
        f"results={results}",
        f"data.tiny.cache_dir={tmp_path / 'cache'}",
        "data.tiny.num_train=6",
        "data.tiny.num_val=6",
        "data.tiny.num_test=6",
        "data.tiny.image_size=64",
        "data.tiny.classes=[car,cat,dog]",
        "data.num_workers=0",
        # goyal19's pooling of conv5 (8/1) needs the maps of a standard-size crop.
        "image.resize=256",
        "image.crop=227",
        "protocol=svm",
        "low_shot=true",
        "svm.low_shot_k=[1,2,64]",
        "svm.low_shot_samples=3",
        "svm.costs=[0.1,10]",
        "svm.save_features=true",
        "trainer.accelerator=cpu",
        "logger.kind=csv",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [row["k"] for row in rows] == [1, 2, 64]
    for row in rows:
        assert row["task"] == "voc-svm-low-shot" and row["schema"] == SCHEMA and row["layer"] == "conv5"
        assert row["samples"] == 3 and len(row["map_per_sample"]) == 3 and row["svm_cost"] in (0.1, 10.0)
        assert row["map"] == pytest.approx(np.mean(row["map_per_sample"]), abs=1e-3)
        assert row["map_std"] == pytest.approx(np.std(row["map_per_sample"]), abs=1e-3)
        assert row["map"] == row["map_by_cost"][f"{row['svm_cost']:g}"]
        assert list(row["positives_used"]) == ["car", "cat", "dog"]
    assert rows[0]["k_effective"] == 1 and rows[0]["negatives_used"] == {"car": 2, "cat": 2, "dog": 2}
    assert rows[0]["complete"] and not rows[2]["complete"]
    # 12 trainval images cannot give any class 64 positives: every class trains on all of its own.
    assert rows[2]["k_effective"] < 64 and all(used < 64 for used in rows[2]["positives_used"].values())
    assert "fewer than 64 positive training images" in run.stderr
    assert "fewer than 128 negative training images" in run.stderr
    run_dir = tmp_path / "runs" / "voc-cls-tiny-pretrain-svm-low-shot-conv5"
    assert json.loads((run_dir / "results.json").read_text()) == rows
    read_plot(run_dir / "low_shot_conv5.png", width=660, height=462)
    assert_each_draws_map_refits_from_the_saved_draws(rows, run_dir)

    stored = [ResultRow(line, row) for line, row in enumerate(rows, start=1)]
    assert latest_of_each_run(stored) == stored  # one row per k of one run: none replaces another
    text = "\n".join(
        {s.title: s for s in build_sections(stored)}["Low-shot VOC07 SVMs (Goyal et al. 2019)"].lines
    )
    assert f"{rows[0]['map']:.1f}+-{rows[0]['map_std']:.1f}" in text and "k=64" in text
    assert f"{rows[2]['map']:.1f}+-{rows[2]['map_std']:.1f}!" in text


def test_a_class_without_clear_positives_is_named_by_low_shot_and_the_full_protocol() -> None:
    from transfer.voc.svm import evaluate_svms

    train, test = _features(60, 3, seed=0), _features(40, 3, seed=1)
    train.targets[:, 1] = 0  # "cat" has no positive training image
    names = ["car", "cat", "dog"]
    with pytest.raises(ValueError, match=r"^class 'cat' \(column 1\): a low-shot draw has 0 positive"):
        low_shot_svms(train, test, [1], 1, [1.0], 2.0, 200, "area-envelope", class_names=names)
    with pytest.raises(ValueError, match=r"^class 'cat' \(column 1\): cross-validating an SVM cost needs"):
        evaluate_svms(train, test, [1.0], 3, 2.0, 200, "area-envelope", class_names=names)


def assert_each_draws_map_refits_from_the_saved_draws(rows: list[dict], run_dir: Path) -> None:
    """Each draw's mAP again: scikit-learn's LinearSVC fitted on the training images the run saved for that draw
    (at the row's cost, with the run's SVM settings), scored on the saved test features by the devkit's rules."""
    from sklearn.svm import LinearSVC

    config = OmegaConf.load(run_dir / "config.yaml")
    saved, draws = np.load(run_dir / "low_shot_features.npz"), np.load(run_dir / "low_shot_draws.npz")
    train, targets, ignore = saved["train_features"], saved["train_targets"], saved["train_ignore"]
    classes = targets.shape[1]
    for row in rows:
        for draw in range(row["samples"]):
            scores = []
            for column in range(classes):
                positives = draws[f"k{row['k']}_draw{draw}_class{column}_positives"]
                negatives = draws[f"k{row['k']}_draw{draw}_class{column}_negatives"]
                clear = ~ignore[:, column].astype(bool)
                assert (targets[positives, column] == 1).all() and clear[positives].all()
                assert (targets[negatives, column] == 0).all() and clear[negatives].all()
                name = list(row["positives_used"])[column]
                assert (len(positives), len(negatives)) == (
                    row["positives_used"][name], row["negatives_used"][name],
                )  # fmt: skip
                svm = LinearSVC(
                    C=row["svm_cost"],
                    class_weight={1: config.svm.positive_weight, 0: 1.0},
                    loss="squared_hinge",
                    dual=True,
                    max_iter=config.svm.max_iter,
                    random_state=config.trainer.seed,
                ).fit(
                    train[np.concatenate([positives, negatives])],
                    np.r_[np.ones(len(positives), dtype=int), np.zeros(len(negatives), dtype=int)],
                )
                scores.append(svm.decision_function(saved["test_features"]))
            aps = classification_ap_percent(
                np.stack(scores, axis=1),
                saved["test_targets"],
                saved["test_ignore"],
                ap_metric=row["ap_metric"],
            )
            refit = np.mean([ap for ap in aps if ap is not None])
            assert row["map_per_sample"][draw] == pytest.approx(refit, abs=1e-3), (row["k"], draw)
