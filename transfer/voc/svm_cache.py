"""What a VOC SVM job keeps on disk so that a killed one resumes where it stopped (``resume=auto``).

``features/<key>/chunk-NNNNN.npz``: the pooled, normalised features of ``svm.chunk_images`` images at a time, with
their targets; ``svms/<key>/class-NN.npz``: each class's fitted hyperplane, its cost and cross-validated APs. The
key is a hash of everything the files depend on: the trunk's weights checksum, the layer and its pooling (the
protocol), the image size, the split's files and classes (and, for the SVMs, the features' key and the SVM
settings), written out beside the files as ``key.json``. Every file is written atomically, and read as data only
(``numpy.load`` without pickles); one that does not fit is a one-line error naming it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.svm import LinearSVC
from torch.utils.data import Dataset, Subset

from lit_colorization.runtime.preemption import StopBetweenUnits
from lit_colorization.store.atomic import atomic_open, write_text
from transfer.voc.svm import ClassSVM, FeatureSet

FEATURES_DIR = "features"
SVMS_DIR = "svms"
KEY_FILE = "key.json"


class CacheError(ValueError):
    """A cached file that cannot be used; the one-line message names it."""


def cache_key(parts: dict[str, Any]) -> str:
    """A short hash of ``parts`` (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def keyed_folder(parent: Path, parts: dict[str, Any]) -> Path:
    """``parent/<cache_key(parts)>``, made with its ``key.json`` on first use."""
    folder = parent / cache_key(parts)
    if not (folder / KEY_FILE).exists():
        write_text(folder / KEY_FILE, json.dumps(parts, sort_keys=True, indent=1, default=str))
    return folder


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    with atomic_open(path, "wb") as stream:
        np.savez(stream, **arrays)


def load_arrays(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as loaded:
            missing = [name for name in names if name not in loaded.files]
            if missing:
                raise CacheError(f"{path}: cached file lacks {missing}; delete it to recompute")
            return {name: loaded[name] for name in names}
    except (OSError, ValueError) as error:
        if isinstance(error, CacheError):
            raise
        raise CacheError(f"{path}: unreadable cached file ({error}); delete it to recompute") from None


class FeatureCache:
    """The extracted features of one split in chunks under ``folder`` (see the module's docstring)."""

    def __init__(self, folder: Path, chunk_images: int, stop: StopBetweenUnits) -> None:
        self.folder = folder
        self.chunk_images = chunk_images
        self.stop = stop

    def features(self, dataset: Dataset, extract: Callable[[Dataset], FeatureSet]) -> FeatureSet:
        """The features of every image of ``dataset``: cached chunks read, the others extracted and saved."""
        count = len(dataset)  # type: ignore[arg-type]
        chunks = math.ceil(count / self.chunk_images)
        parts = []
        for chunk in range(chunks):
            start, stop = chunk * self.chunk_images, min(count, (chunk + 1) * self.chunk_images)
            path = self.folder / f"chunk-{chunk:05d}.npz"
            if path.exists():
                part = FeatureSet(**load_arrays(path, ("features", "targets", "ignore")))
                if len(part.features) != stop - start:
                    raise CacheError(
                        f"{path}: {len(part.features)} cached images, expected {stop - start}; delete it to recompute"
                    )
            else:
                part = extract(Subset(dataset, range(start, stop)))
                save_arrays(path, features=part.features, targets=part.targets, ignore=part.ignore)
                self.stop.check(f"saved features chunk {chunk + 1}/{chunks} in {self.folder}")
            parts.append(part)
        return FeatureSet(
            np.concatenate([part.features for part in parts]),
            np.concatenate([part.targets for part in parts]),
            np.concatenate([part.ignore for part in parts]).astype(bool),
        )


class SVMStore:
    """Each class's fitted SVM under ``folder``, one file per class, read back instead of refitted."""

    def __init__(self, folder: Path, stop: StopBetweenUnits) -> None:
        self.folder = folder
        self.stop = stop

    def path(self, column: int) -> Path:
        return self.folder / f"class-{column:02d}.npz"

    def load(self, column: int) -> ClassSVM | None:
        """The SVM of class ``column`` fitted by an earlier start, None if there is none."""
        path = self.path(column)
        if not path.exists():
            return None
        names = ("coef", "intercept", "cost", "cv_costs", "cv_aps", "folds")
        arrays = load_arrays(path, names)
        model = LinearSVC(C=float(arrays["cost"]))
        model.coef_, model.intercept_ = arrays["coef"], arrays["intercept"]
        model.classes_ = np.array([0, 1])
        model.n_features_in_ = int(arrays["coef"].shape[1])
        cv_ap = dict(zip(map(float, arrays["cv_costs"]), map(float, arrays["cv_aps"]), strict=True))
        return ClassSVM(model, float(arrays["cost"]), cv_ap, int(arrays["folds"]))

    def save(self, column: int, svm: ClassSVM) -> None:
        """Keep class ``column``'s SVM; then stop (exit 75) if a stop signal came meanwhile."""
        save_arrays(
            self.path(column),
            coef=svm.model.coef_,
            intercept=svm.model.intercept_,
            cost=np.array(svm.cost),
            cv_costs=np.array(list(svm.cv_ap)),
            cv_aps=np.array(list(svm.cv_ap.values())),
            folds=np.array(svm.folds),
        )
        self.stop.check(f"saved the SVM of class {column + 1} in {self.folder}")
