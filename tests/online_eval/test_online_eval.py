"""Online evaluation while pretraining: pooling, hooks, heads, the weighted kNN (one process and sharded over two),
the callback inside real tiny runs (no gradient into the colorizer, logged keys, report files, resume)."""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lit_colorization.config.loading import ConfigError
from lit_colorization.data.datamodule import ColorizationDataModule
from lit_colorization.layer_colours import layer_colour
from lit_colorization.models import create_model
from lit_colorization.online_eval.history import (
    Point,
    format_table,
    plot,
    read_history,
    series,
    write_history,
)
from lit_colorization.online_eval.knn import knn_predict, top_k_neighbours, vote
from lit_colorization.online_eval.probes import FeatureTap, OnlineProbes, feature_shapes, pooled_side
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.pretraining import pretrain
from lit_colorization.stats import accuracy_interval
from lit_colorization.store.checkpoint import load_raw, read_checkpoint
from tests.helpers import read_plot, tiny_pretrain_overrides, tiny_synthetic_data
from tests.paths import TESTS
from transfer.probe.protocols import ZHANG16

HERE = TESTS


@pytest.mark.parametrize(
    ("model", "layers", "crop"),
    [
        ("alexnet", ("conv1", "conv2", "conv3", "conv4", "conv5"), 227),
        ("eccv16", ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "conv7", "conv8"), 224),
        ("resnet50", ("conv1", "res2", "res3", "res4", "res5"), 224),
    ],
)
def test_pooling_gives_the_probes_grids_of_about_9000_features(model, layers, crop):
    # The probe protocol's grids live in transfer; lit_colorization derives the same sides from the channel counts
    # (AlexNet's fc6 and fc7, 12x12 in the training geometry, pool to 2x2 here; the probe sees them 1x1).
    shapes = feature_shapes(create_model(model), list(layers), crop)
    sides = {layer: ZHANG16.layer_probe(model, layer).reduction.side for layer in layers}
    assert {layer: pooled_side(*shape) for layer, shape in shapes.items()} == sides


def test_pooling_of_a_narrow_network_is_capped_by_the_feature_map():
    assert pooled_side(16, 32, 32) == 24  # sqrt(9216 / 16) = 24 fits in 32 x 32
    assert pooled_side(16, 8, 8) == 8
    assert pooled_side(4096, 1, 1) == 1


def test_feature_shapes_leave_the_batchnorm_statistics_and_the_mode_alone():
    network = create_model("eccv16", width=0.125)
    network.train()
    before = {name: value.clone() for name, value in network.state_dict().items()}
    feature_shapes(network, ["conv1", "conv8"], 32)
    assert network.training
    assert all(torch.equal(before[name], value) for name, value in network.state_dict().items())


def test_tap_hands_over_the_training_forwards_features_detached():
    torch.manual_seed(0)
    network = create_model("eccv16", width=0.125).eval()
    tap = FeatureTap(network, ["conv2", "conv5"])
    lightness = torch.rand(2, 1, 32, 32) * 100
    network(lightness).sum().backward()
    taken = tap.take()
    assert tap.take() == {}  # taken once
    expected = network.features(lightness, ["conv2", "conv5"])
    assert taken.keys() == {"conv2", "conv5"}
    for layer, features in taken.items():
        assert not features.requires_grad
        assert torch.equal(features, expected[layer])
    tap.remove()
    tap.clear()  # features() above ran the hooks too
    network(lightness)
    assert tap.take() == {}


def test_hooks_trace_into_the_compiled_network_without_a_graph_break():
    # The ImageNet presets compile the network (on CUDA): the hooks must not split its graph. Dynamo's tracing is
    # the same on the CPU; aot_eager stands in for inductor, which the CPU tests do not build.
    torch.manual_seed(0)
    network = create_model("eccv16", width=0.125)
    tap = FeatureTap(network, list(network.feature_layers))
    lightness = torch.rand(2, 1, 32, 32) * 100
    explanation = torch._dynamo.explain(network)(lightness)
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons
    tap.clear()
    network.compile(backend="aot_eager")
    network(lightness).sum().backward()
    taken = tap.take()
    expected = network.features(lightness, list(network.feature_layers))
    assert taken.keys() == expected.keys()
    assert all(torch.allclose(taken[layer], expected[layer], atol=1e-5) for layer in taken)


def test_probes_learn_separable_features_and_touch_only_their_own_parameters():
    torch.manual_seed(0)
    labels = torch.arange(4).repeat(8)
    features = {
        "a": F.one_hot(labels, 4).float().view(32, 4, 1, 1).expand(32, 4, 2, 2)
        + 0.1 * torch.randn(32, 4, 2, 2)
    }
    features["a"].requires_grad_(True)
    probes = OnlineProbes({"a": torch.Size([4, 2, 2])}, num_classes=4, lr=0.1, momentum=0.9, weight_decay=0.0)
    assert probes.dims == {"a": 4 * 2 * 2}
    for _ in range(30):
        probes.update(features, labels)
    assert features["a"].grad is None
    assert probes.steps == 30
    assert int(probes.correct(features, labels)["a"]) == 32


def test_weighted_knn_votes_as_computed_by_hand():
    bank = F.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]]), dim=1)
    labels = torch.tensor([0, 1, 1, 2])
    query = F.normalize(torch.tensor([[1.0, 0.2]]), dim=1)
    similarities, neighbour_labels = top_k_neighbours(query, bank, labels, k=3)
    cosines = (bank @ query[0]).tolist()
    assert similarities[0].tolist() == pytest.approx(sorted(cosines, reverse=True)[:3])
    assert neighbour_labels[0].tolist() == [0, 1, 1]
    # Two label-1 neighbours at cosines 0.90 and 0.20 outvote one label-0 neighbour at 0.98 when T is large ...
    weight = {t: [math.exp(c / t) for c in cosines] for t in (10.0, 0.07)}
    assert weight[10.0][1] + weight[10.0][2] > weight[10.0][0]
    assert vote(similarities, neighbour_labels, 3, temperature=10.0).tolist() == [1]
    # ... and the nearest neighbour wins alone at T = 0.07, where exp(s / T) makes it count far more.
    assert weight[0.07][0] > weight[0.07][1] + weight[0.07][2]
    assert knn_predict(query, bank, labels, 3, k=3, temperature=0.07).tolist() == [0]


def test_knn_with_a_bank_smaller_than_k_pads_with_neighbours_that_weigh_nothing():
    bank = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    similarities, labels = top_k_neighbours(bank, bank, torch.tensor([3, 1]), k=5)
    assert similarities.shape == (2, 5) and torch.isinf(similarities[:, 2:]).all()
    assert vote(similarities, labels, 4, temperature=0.07).tolist() == [3, 1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_knn_over_a_bank_sharded_on_two_gloo_ranks_equals_the_whole_bank(tmp_path):
    torch.manual_seed(0)
    bank = F.normalize(torch.randn(50, 16), dim=1)
    bank_labels = torch.randint(0, 5, (50,))
    queries = F.normalize(torch.randn(11, 16), dim=1)  # 6 on rank 0, 5 on rank 1: unequal batches
    torch.save({"bank": bank, "labels": bank_labels, "queries": queries}, tmp_path / "data.pt")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    result = subprocess.run(
        [sys.executable, str(HERE / "knn_sharded.py"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sharded = torch.cat([torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)])
    whole = knn_predict(queries, bank, bank_labels, 5, k=20, temperature=0.07)
    assert torch.equal(sharded, whole)


def test_bank_loader_spreads_its_crops_over_the_training_set_and_splits_them_between_ranks():
    datamodule = ColorizationDataModule(PRETRAIN.load("sample", tiny_synthetic_data(batch_size=4)).data)
    datamodule.setup("fit")
    whole = [label for batch in datamodule.bank_dataloader(6) for label in batch["label"].tolist()]
    assert len(whole) == 6
    shards = [
        [label for batch in datamodule.bank_dataloader(6, rank, 2) for label in batch["label"].tolist()]
        for rank in (0, 1)
    ]
    assert sorted(shards[0] + shards[1]) == sorted(whole) and len(shards[0]) == len(shards[1]) == 3


def test_online_eval_config_is_checked():
    with pytest.raises(ConfigError, match=r"online_eval.layers.*conv1"):
        PRETRAIN.load("sample", ["online_eval.layers=[conv9]"])
    for override, key in (("online_eval.knn_k=0", "knn_k"), ("online_eval.knn_bank_size=0", "knn_bank_size")):
        with pytest.raises(ConfigError, match=f"online_eval.{key}"):
            PRETRAIN.load("sample", [override])
    assert PRETRAIN.load("sample", []).online_eval.enabled
    assert PRETRAIN.load("eccv16_imagenet", ["data.source=synthetic", "data.decode=cpu"]).online_eval.enabled


def test_accuracy_interval_is_the_wilson_interval_in_percent():
    # 30 of 80 crops right, z = 1.96: centre and half-width of Wilson's formula computed by hand.
    n, p, z = 80, 30 / 80, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = accuracy_interval(37.5, 80)
    assert (low, high) == pytest.approx((100 * (centre - half), 100 * (centre + half)), abs=1e-9)
    assert (low, high) == pytest.approx((27.69, 48.45), abs=0.01)
    assert accuracy_interval(0.0, 40)[0] == pytest.approx(0.0, abs=1e-12)
    assert accuracy_interval(100.0, 40)[1] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="percentage"):
        accuracy_interval(1.5e2, 10)


def test_report_keeps_the_latest_point_of_a_step_and_writes_json_png_and_text(tmp_path):
    points = [
        Point(0, "knn/conv1", 4, 40),
        Point(10, "knn/conv1", 10, 40),
        Point(10, "knn/conv1", 12, 40),  # a validation rerun after a resume replaces the first
        Point(10, "online/conv1", 8, 40),
    ]
    grouped = series(points)
    assert [(p.step, p.correct) for p in grouped["knn/conv1"]] == [(0, 4), (10, 12)]
    assert read_history(write_history(points, tmp_path / "h.json")) == points
    text = "\n".join(format_table(points))
    assert "knn/conv1" in text and "30.0%" in text and "12/40" in text
    # Small multiples: one panel per layer (here conv1 alone), read back with ink on it.
    read_plot(plot(points, tmp_path / "curves.png"), width=374, height=374)


# --- the callback in real tiny runs ------------------------------------------------------------------------------


def _tiny(tmp_path: Path, run: str, *extra: str):
    return PRETRAIN.load(
        "sample",
        [
            *tiny_pretrain_overrides(tmp_path, run=run),
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            *extra,
        ],
    )


def _logged_keys(run_dir: Path) -> set[str]:
    keys = set()
    for path in (run_dir / "csv").glob("version_*/metrics.csv"):
        with path.open() as stream:
            keys |= {key for row in csv.DictReader(stream) for key, value in row.items() if value}
    return keys


def test_colorizer_trains_exactly_as_without_the_callback_which_logs_and_plots_every_layer(tmp_path):
    with_online = pretrain(_tiny(tmp_path, "with"))
    without = pretrain(_tiny(tmp_path, "without", "online_eval.enabled=false"))
    weights = {
        run: read_checkpoint(run / "checkpoints" / "last.ckpt").state_dict for run in (with_online, without)
    }
    assert weights[with_online].keys() == weights[without].keys()
    for name, value in weights[with_online].items():
        assert torch.equal(value, weights[without][name]), name
    layers = create_model("eccv16", width=0.125).feature_layers
    logged = _logged_keys(with_online)
    assert {f"knn/{layer}/top1" for layer in layers} <= logged
    assert {f"online/{layer}/top1" for layer in layers} <= logged
    assert not any(key.startswith(("knn/", "online/")) for key in _logged_keys(without))
    history = read_history(with_online / "online_eval.json")
    # kNN at step 0 (the untrained network) and 2; online probes only once they have trained (step 2).
    assert {p.step for p in history if p.kind == "knn"} == {0, 2}
    assert {p.step for p in history if p.kind == "online"} == {2}
    assert {p.total for p in history} == {8}  # every synthetic validation image, each scored once
    # One panel per layer: the 8 layers of the tiny run laid out 4 to a row (two rows).
    read_plot(with_online / "online_eval.png", width=1496, height=682)
    assert not (without / "online_eval.png").exists()


def _saved_state(run_dir: Path) -> dict:
    callbacks = load_raw(run_dir / "checkpoints" / "last.ckpt")["callbacks"]
    return next(value for key, value in callbacks.items() if "OnlineEvaluation" in key)


def test_resumed_run_keeps_its_heads_and_earlier_points(tmp_path):
    first = pretrain(_tiny(tmp_path, "resumed", "online_eval.save_heads=true"))
    saved = _saved_state(first)
    # last.ckpt is written at the end of step 2's batch, after the heads' step, before step 2's validation:
    # that validation's points are only in online_eval.json, and the resumed run takes them from there.
    assert saved["steps"] == 2 and {row["step"] for row in saved["history"]} == {0}
    assert set(saved["heads"]) and set(saved["optimizer"])
    pretrain(_tiny(tmp_path, "resumed", "resume=auto", "trainer.max_steps=4", "online_eval.save_heads=true"))
    steps = {(p.kind, p.step) for p in read_history(first / "online_eval.json")}
    assert steps == {("knn", 0), ("knn", 2), ("knn", 4), ("online", 2), ("online", 4)}
    assert _saved_state(first)["steps"] == 4


def test_heads_stay_out_of_checkpoints_unless_asked_and_a_resumed_run_trains_them_afresh(tmp_path):
    first = pretrain(_tiny(tmp_path, "headless"))
    saved = _saved_state(first)
    assert set(saved) == {"layers", "history"} and {row["step"] for row in saved["history"]} == {0}
    with_heads = pretrain(_tiny(tmp_path, "heads", "online_eval.save_heads=true"))
    size = {run.name: (run / "checkpoints" / "last.ckpt").stat().st_size for run in (first, with_heads)}
    assert size["headless"] < size["heads"]
    pretrain(_tiny(tmp_path, "headless", "resume=auto", "trainer.max_steps=4"))
    steps = {(p.kind, p.step) for p in read_history(first / "online_eval.json")}
    # The points of before the resume are kept; the fresh heads have trained by step 4's validation.
    assert steps == {("knn", 0), ("knn", 2), ("knn", 4), ("online", 2), ("online", 4)}
    assert "heads" not in _saved_state(first)


def test_history_file_is_plain_json(tmp_path):
    points = [Point(2, "online/conv3", 5, 8)]
    path = write_history(points, tmp_path / "online_eval.json")
    assert json.loads(path.read_text()) == [{"step": 2, "metric": "online/conv3", "correct": 5, "total": 8}]


def test_no_bank_worker_outlives_the_fit(tmp_path):
    # Workers ignore SIGTERM (preemption is the main process's), so one left alive would hang the exit.
    pretrain(_tiny(tmp_path, "workers", "data.num_workers=1", "data.persistent_workers=true"))
    assert multiprocessing.active_children() == []


def test_the_plot_has_one_panel_per_layer_a_chance_line_and_one_x_axis(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to read it back
    points = [Point(step, f"{kind}/{layer}", 10, 40) for step in (0, 5) for kind in ("online", "knn")
              for layer in ("conv3", "conv1", "conv8")]  # fmt: skip
    plot(points, tmp_path / "curves.png", num_classes=10)
    shown = [axis for axis in figures[0].axes if axis.get_visible()]
    assert [axis.get_title() for axis in shown] == ["conv1", "conv3", "conv8"]  # depth order
    for axis in shown:
        assert [line.get_ydata()[0] for line in axis.lines if line.get_linestyle() == ":"] == [10.0]  # chance
        assert axis.get_xlim() == shown[0].get_xlim()
        assert {line.get_color() for line in axis.lines if line.get_linestyle() != ":"} == {
            layer_colour(axis.get_title())
        }
    assert len({layer_colour(layer) for layer in ("conv1", "conv2", "conv3", "conv8", "fc6")}) == 5
