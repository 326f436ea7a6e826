"""Low-shot VOC07 classification with per-class linear SVMs on frozen features (Goyal et al. 2019).

Sampling (the benchmark's ``create_voc_low_shot_samples``): for each value of k and each of ``samples``
independent draws, every class gets its own training set drawn without replacement from the training images:
k of the class's clear positives (VOC's "1") and (classes - 1) x k of its negatives (VOC's "-1"; 19k on VOC's
20 classes); images where the class appears only as difficult objects are never drawn for it. Where a class has
fewer positives (or negatives) than asked, all of them are used and the result says so (``k_effective``, the
fewest positives any class trained on, ``complete``, and the counts per class).

Training and scoring: the SVM settings of the full protocol (``transfer.voc.svm.fit_svm``: squared hinge,
positives weighted ``positive_weight``, ``max_iter``) on each draw at every cost of the grid; mAP on the whole
test set (difficult-only entries ignored). Cost: a k's cost is the one with the best mAP averaged over the
draws, as the benchmark picks it (``aggregate_low_shot_svm_stats``); that is a choice on the test set, which
cross-validation cannot replace at k = 1. Reported per k: the mean and standard deviation (numpy's, over the
draws, as the benchmark's) of the mAP at that cost, each draw's mAP, and the mean mAP of every cost.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from lit_colorization.store.atomic import atomic_open
from lit_colorization.store.images import save_figure
from transfer.voc.evaluation import classification_map
from transfer.voc.svm import FeatureSet, class_label, fit_svm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LowShotDraw:
    """One draw's training images per class (indices into the training features)."""

    positives: list[np.ndarray]
    negatives: list[np.ndarray]


@dataclass(frozen=True)
class LowShotResult:
    k: int
    positives_used: list[int]  # per class: min(k, its positives)
    negatives_used: list[int]  # per class: min((classes - 1) x k, its negatives)
    cost: float  # the cost with the best mAP averaged over the draws
    map_per_draw: list[float]  # in [0, 1], at ``cost``
    map_by_cost: dict[float, float]  # mean over the draws, per cost of the grid
    draws: tuple[LowShotDraw, ...] = ()  # the training images of each draw, in draw order

    @property
    def k_effective(self) -> int:
        return min(self.positives_used)

    @property
    def complete(self) -> bool:
        """Every class drew the k positives and (classes - 1) x k negatives asked for."""
        wanted_negatives = (len(self.negatives_used) - 1) * self.k
        return self.k_effective == self.k and min(self.negatives_used) == wanted_negatives

    @property
    def map(self) -> float:
        return float(np.mean(self.map_per_draw))

    @property
    def map_std(self) -> float:
        return float(np.std(self.map_per_draw))


def draw_low_shot(train: FeatureSet, k: int, rng: np.random.Generator) -> LowShotDraw:
    """Per class (column): k clear positives and (classes - 1) x k negatives, without replacement, or all of
    them where a class has fewer."""
    num_classes = train.targets.shape[1]
    positives, negatives = [], []
    for column in range(num_classes):
        kept = ~train.ignore[:, column]
        candidates = (
            np.flatnonzero(kept & (train.targets[:, column] == 1)),
            np.flatnonzero(kept & (train.targets[:, column] == 0)),
        )
        wanted = (k, (num_classes - 1) * k)
        chosen = [
            np.sort(rng.choice(pool, size=min(count, len(pool)), replace=False))
            for pool, count in zip(candidates, wanted, strict=True)
        ]
        positives.append(chosen[0])
        negatives.append(chosen[1])
    return LowShotDraw(positives, negatives)


def draw_map(
    train: FeatureSet,
    test: FeatureSet,
    draw: LowShotDraw,
    cost: float,
    positive_weight: float,
    max_iter: int,
    ap_metric: str,
    seed: int,
    class_names: Sequence[str] | None = None,
) -> float:
    """Test mAP of the per-class SVMs trained on one draw at ``cost`` (``class_names`` name classes in errors)."""
    scores = []
    for column, (positives, negatives) in enumerate(zip(draw.positives, draw.negatives, strict=True)):
        if len(positives) == 0 or len(negatives) == 0:
            raise ValueError(
                f"{class_label(column, class_names)}: a low-shot draw has {len(positives)} positive and "
                f"{len(negatives)} negative training images (clear, not difficult-only); every class needs at "
                "least one of each, as the full SVM protocol needs 2"
            )
        rows = np.concatenate([positives, negatives])
        labels = np.concatenate([np.ones(len(positives), dtype=int), np.zeros(len(negatives), dtype=int)])
        svm = fit_svm(train.features[rows], labels, cost, positive_weight, max_iter, seed)
        scores.append(svm.decision_function(test.features))
    mean_ap, _ = classification_map(
        torch.from_numpy(np.stack(scores, axis=1)),
        torch.from_numpy(test.targets),
        torch.from_numpy(test.ignore),
        ap_metric,
    )
    return mean_ap


def low_shot_svms(
    train: FeatureSet,
    test: FeatureSet,
    ks: Sequence[int],
    samples: int,
    costs: Sequence[float],
    positive_weight: float,
    max_iter: int,
    ap_metric: str,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> list[LowShotResult]:
    """One ``LowShotResult`` per k; draw ``s`` of k comes from the generator seeded ``(seed, k, s)``, so a draw
    is the same whatever other k or draws run beside it."""
    results = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        for k in ks:
            draws = [draw_low_shot(train, k, np.random.default_rng([seed, k, s])) for s in range(samples)]
            maps = np.array(
                [
                    [
                        draw_map(
                            train,
                            test,
                            draw,
                            cost,
                            positive_weight,
                            max_iter,
                            ap_metric,
                            seed,
                            class_names,
                        )
                        for cost in costs
                    ]
                    for draw in draws
                ]
            )
            means = maps.mean(axis=0)
            best = int(np.argmax(means))  # the first of tied costs
            results.append(
                LowShotResult(
                    k=k,
                    positives_used=[len(p) for p in draws[0].positives],
                    negatives_used=[len(n) for n in draws[0].negatives],
                    cost=float(costs[best]),
                    map_per_draw=[float(value) for value in maps[:, best]],
                    map_by_cost={float(cost): float(value) for cost, value in zip(costs, means, strict=True)},
                    draws=tuple(draws),
                )
            )
            log.info(
                "low-shot k=%d: mAP %.4f +- %.4f at cost %g",
                k,
                results[-1].map,
                results[-1].map_std,
                costs[best],
            )
    unconverged = sum(issubclass(warning.category, ConvergenceWarning) for warning in caught)
    for warning in caught:  # only the convergence warnings are summarised; the rest pass on unchanged
        if not issubclass(warning.category, ConvergenceWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if unconverged:
        log.warning("%d LinearSVC fits stopped at svm.max_iter=%d before converging", unconverged, max_iter)
    return results


def save_low_shot(
    results: Sequence[LowShotResult], train: FeatureSet, test: FeatureSet, folder: Path, with_features: bool
) -> list[Path]:
    """Every draw's training images as ``folder/low_shot_draws.npz`` (``k<k>_draw<s>_class<c>_positives`` and
    ``_negatives``: indices into the training features), and with ``with_features`` the features, targets and
    ignore masks of both sets as ``low_shot_features.npz``: what refitting the draws needs."""
    draws = {
        f"k{result.k}_draw{index}_class{column}_{kind}": chosen
        for result in results
        for index, draw in enumerate(result.draws)
        for kind, per_class in (("positives", draw.positives), ("negatives", draw.negatives))
        for column, chosen in enumerate(per_class)
    }
    written = [folder / "low_shot_draws.npz"]
    with atomic_open(written[0], "wb") as stream:
        np.savez_compressed(stream, **draws)
    if with_features:
        written.append(folder / "low_shot_features.npz")
        arrays = {
            f"{name}_{field}": getattr(features, field)
            for name, features in (("train", train), ("test", test))
            for field in ("features", "targets", "ignore")
        }
        with atomic_open(written[1], "wb") as stream:
            np.savez(stream, **arrays)
    return written


def plot_low_shot(results: Sequence[LowShotResult], title: str, path: str | Path) -> Path:
    """A PNG of mAP (%) against k (log scale): each draw as a dot, the mean with +- one standard deviation;
    a k some class could not fill (not ``complete``) is drawn hollow and labelled with its k_effective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.2))
    ks = [result.k for result in results]
    for result in results:
        axis.scatter(
            [result.k] * len(result.map_per_draw),
            [100 * v for v in result.map_per_draw],
            s=10,
            alpha=0.35,
            color="grey",
        )
    axis.errorbar(
        ks,
        [100 * result.map for result in results],
        yerr=[100 * result.map_std for result in results],
        marker="o",
        capsize=4,
        linewidth=2,
        label="mean +- std over draws",
    )
    short = [result for result in results if not result.complete]
    if short:
        axis.scatter(
            [result.k for result in short],
            [100 * result.map for result in short],
            s=90,
            facecolors="white",
            edgecolors="red",
            zorder=3,
            label="some class had fewer than k positives or (classes - 1) x k negatives",
        )
        for result in short:
            axis.annotate(
                f"k_eff {result.k_effective}",
                (result.k, 100 * result.map),
                textcoords="offset points",
                xytext=(4, -12),
                fontsize=7,
            )
    axis.set_xscale("log", base=2)
    axis.set_xticks(ks, [str(k) for k in ks])
    axis.set_xlabel("positives per class (k)")
    axis.set_ylabel("VOC07 test mAP (%)")
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, path)
