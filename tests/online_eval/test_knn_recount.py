"""The kNN counts a real run wrote to online_eval.json, recounted by numpy brute force over the features of the
run's own checkpoint; and the online evaluation's hooks read the same layers the transfer trunk cuts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lit_colorization.color import uint8_to_lab
from lit_colorization.data.datamodule import build_datamodule
from lit_colorization.models import create_model
from lit_colorization.online_eval.history import read_history
from lit_colorization.online_eval.probes import FeatureTap
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.pretraining import pretrain
from lit_colorization.store.checkpoint import build_network, read_checkpoint
from tests.helpers import tiny_pretrain_overrides
from transfer.trunk import Trunk

KNN_K, KNN_T, BANK = 3, 0.07, 12  # a bank smaller than the 16 training images, and k smaller than the bank


def stage_outputs(
    network: torch.nn.Module, layers: list[str], lightness: torch.Tensor
) -> dict[str, np.ndarray]:
    """Each named stage's output in one plain forward of the whole network, caught by this test's own hooks."""
    caught: dict[str, np.ndarray] = {}
    handles = [
        getattr(network, layer).register_forward_hook(
            lambda module, inputs, output, layer=layer: caught.__setitem__(layer, output.double().numpy())
        )
        for layer in layers
    ]
    try:
        with torch.no_grad():
            network(lightness)
    finally:
        for handle in handles:
            handle.remove()
    return caught


def pooled_unit_vectors(maps: np.ndarray) -> np.ndarray:
    """Average pooling to the square grid of about 9,216 values (capped by the map), flattened, unit length."""
    channels, height, width = maps.shape[1:]
    side = min(max(1, round(math.sqrt(9216 / channels))), height, width)
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(maps), side).flatten(1).numpy()
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def weighted_knn_correct(queries, query_labels, bank, bank_labels, num_classes: int) -> int:
    """Wu et al.'s weighted kNN by brute force: the k most cosine-similar bank rows vote exp(similarity / T)."""
    similarities = queries @ bank.T
    correct = 0
    for row, label in zip(similarities, query_labels, strict=True):
        nearest = np.argsort(-row, kind="stable")[:KNN_K]
        votes = np.zeros(num_classes)
        np.add.at(votes, bank_labels[nearest], np.exp(row[nearest] / KNN_T))
        correct += int(np.argmax(votes) == label)
    return correct


def features_and_labels(network, layers, loader) -> tuple[dict[str, np.ndarray], np.ndarray]:
    batches, labels = [], []
    for batch in loader:
        batches.append(stage_outputs(network, layers, uint8_to_lab(batch["rgb"])[:, :1]))
        labels.append(batch["label"].numpy())
    stacked = {layer: pooled_unit_vectors(np.concatenate([b[layer] for b in batches])) for layer in layers}
    return stacked, np.concatenate(labels)


def test_knn_counts_in_online_eval_json_equal_a_brute_force_recount_from_the_checkpoint(tmp_path):
    overrides = [
        *tiny_pretrain_overrides(tmp_path, "knn"),
        "trainer.max_steps=2",
        f"online_eval.knn_k={KNN_K}",
        f"online_eval.knn_temperature={KNN_T}",
        f"online_eval.knn_bank_size={BANK}",
    ]
    config = PRETRAIN.load("sample", overrides)
    run_dir = pretrain(config)
    colorizer = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    network = build_network(colorizer).eval()  # the weights the last validation scored (no step after it)
    layers = list(network.feature_layers)
    datamodule = build_datamodule(config.data)
    datamodule.setup("fit")
    # The bank's crops: BANK of the 16 training images, evenly spread (indices round(i * 15 / 11)).
    bank_loader = datamodule.bank_dataloader(BANK)
    assert [int(i) for i in bank_loader.dataset.indices] == [round(i * 15 / (BANK - 1)) for i in range(BANK)]
    bank, bank_labels = features_and_labels(network, layers, bank_loader)
    queries, query_labels = features_and_labels(network, layers, datamodule.val_dataloader())

    logged = {
        p.layer: p
        for p in read_history(run_dir / "online_eval.json")
        if p.kind == "knn" and p.step == colorizer.global_step
    }
    assert sorted(logged) == sorted(layers) and colorizer.global_step == 2
    recounted = {
        layer: weighted_knn_correct(
            queries[layer], query_labels, bank[layer], bank_labels, datamodule.num_classes
        )
        for layer in layers
    }
    assert {layer: (p.correct, p.total) for layer, p in logged.items()} == {
        layer: (count, len(query_labels)) for layer, count in recounted.items()
    }


@pytest.mark.parametrize("model", ["alexnet", "eccv16", "resnet50"])
def test_online_hooks_see_the_features_the_transfer_trunk_gives(model):
    """online/<layer> and knn/<layer> while pretraining are the same maps as the probes' <layer> afterwards."""
    torch.manual_seed(0)
    network = create_model(model, **({} if model == "resnet50" else {"width": 0.125})).eval()
    layers = list(network.feature_layers)
    tap = FeatureTap(network, layers)
    lightness = torch.rand(2, 1, 64, 64) * 100
    with torch.no_grad():
        network(lightness)
        tapped = tap.take()
        trunk = Trunk(network, layers)(lightness)
    assert tapped.keys() == trunk.keys() == set(layers)
    for layer in layers:
        assert torch.equal(tapped[layer], trunk[layer]), layer
