"""A killed VOC SVM job resumes from its cached feature chunks and the classes already fitted (resume=auto), and
ends with the numbers of a job that was never stopped; a stop signal exits with 75 once the unit in flight is
saved."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.svm import LinearSVC

from lit_colorization.color import ab_bins
from lit_colorization.models import create_model
from lit_colorization.runtime.preemption import PREEMPTED_EXIT_CODE, RunPreempted, StopBetweenUnits
from lit_colorization.store.checkpoint import write_checkpoint
from transfer.cli.voc_cls import main as voc_cls_main
from transfer.voc.svm import ClassSVM
from transfer.voc.svm_cache import SVMStore


@pytest.fixture(scope="module")
def alexnet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    network = create_model("alexnet", width=0.125)
    path = tmp_path_factory.mktemp("ckpt") / "pre" / "checkpoints" / "last.ckpt"
    return write_checkpoint(path, network, ab_bins(), None, {"run": "tiny-pretrain"})


def svm_overrides(tmp_path: Path, ckpt: Path, run: str, *extra: str) -> list[str]:
    return [
        f"ckpt={ckpt}", f"runs_dir={tmp_path / 'runs'}", f"results={tmp_path / 'results.jsonl'}", f"run={run}",
        f"data.tiny.cache_dir={tmp_path / 'cache'}", "data.tiny.num_train=6", "data.tiny.num_val=6",
        "data.tiny.num_test=6", "data.tiny.image_size=64", "data.tiny.classes=[car,cat,dog]", "data.num_workers=0",
        "data.batch_size=4", "image.resize=256", "image.crop=227", "protocol=svm", "svm.costs=[0.1,1,10]", "svm.chunk_images=4",
        "trainer.accelerator=cpu", "trainer.progress_bar=false", "logger.kind=none",
        *extra,
    ]  # fmt: skip


def test_svm_job_resumes_from_cached_features_and_fitted_classes(tmp_path, alexnet_checkpoint, capsys):
    runs = tmp_path / "runs"
    voc_cls_main(svm_overrides(tmp_path, alexnet_checkpoint, "whole"))
    whole = runs / "voc-cls-whole"
    [train_chunks, test_chunks] = sorted(
        (sorted(folder.glob("chunk-*.npz")) for folder in (whole / "features").iterdir()),
        key=len,
        reverse=True,
    )
    assert (len(train_chunks), len(test_chunks)) == (3, 2)  # 12 trainval and 6 test images, 4 per chunk
    [svm_folder] = (whole / "svms").iterdir()
    assert sorted(path.name for path in svm_folder.glob("class-*.npz")) == [
        f"class-0{i}.npz" for i in range(3)
    ]

    # What a kill after the second training chunk's class SVMs would leave: some chunks and classes, no results.
    stopped = runs / "voc-cls-stopped"
    stopped.mkdir()
    for folder in ("features", "svms"):
        shutil.copytree(whole / folder, stopped / folder)
    (stopped / train_chunks[-1].relative_to(whole)).unlink()
    (stopped / svm_folder.relative_to(whole) / "class-02.npz").unlink()
    kept = {path: path.stat().st_mtime_ns for path in stopped.rglob("*.npz")}

    with pytest.raises(SystemExit) as refused:  # cached work is continued only when asked to
        voc_cls_main(svm_overrides(tmp_path, alexnet_checkpoint, "stopped"))
    assert refused.value.code == 2 and "continue it with RESUME=auto" in capsys.readouterr().err

    voc_cls_main(svm_overrides(tmp_path, alexnet_checkpoint, "stopped", "resume=auto"))
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in kept.items())  # read back, not recomputed
    assert (stopped / train_chunks[-1].relative_to(whole)).exists()
    [resumed_row], [whole_row] = (
        json.loads((folder / "results.json").read_text()) for folder in (stopped, whole)
    )
    assert resumed_row["map"] == pytest.approx(whole_row["map"], abs=1e-6)
    assert resumed_row["ap"] == whole_row["ap"] and resumed_row["svm_cost"] == whole_row["svm_cost"]


def test_a_stop_signal_exits_75_after_the_class_in_flight_is_saved(tmp_path):
    model = LinearSVC().fit(
        np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [2.0, 0.0]]), np.array([0, 1, 0, 1])
    )
    svm = ClassSVM(model, 1.0, {0.1: 0.5, 1.0: 0.75}, 2)
    with StopBetweenUnits() as stop:
        store = SVMStore(tmp_path, stop)
        store.save(0, svm)  # no signal yet: carries on
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(RunPreempted) as stopped:
            store.save(1, svm)
    assert stopped.value.code == PREEMPTED_EXIT_CODE
    loaded = store.load(1)
    assert (loaded.cost, loaded.cv_ap, loaded.folds) == (1.0, {0.1: 0.5, 1.0: 0.75}, 2)
    probe = np.array([[0.5, 0.2], [0.1, 3.0]])
    assert np.array_equal(loaded.model.decision_function(probe), model.decision_function(probe))
    assert signal.getsignal(signal.SIGTERM) is not stop._record  # the previous handler is back
