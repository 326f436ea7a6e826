"""Fixtures every test folder uses: a private file-index cache, and one finished tiny pretraining run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_module, tiny_pretrain_overrides


@pytest.fixture(scope="session", autouse=True)
def private_file_index_cache(tmp_path_factory) -> Iterator[Path]:
    """The file indexes of image folders (data.index_cache=auto) go to a folder of this test session, not the
    user's cache; subprocesses inherit it through the environment."""
    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("LIT_COLORIZATION_CACHE")
    os.environ["LIT_COLORIZATION_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("LIT_COLORIZATION_CACHE", None)
    else:
        os.environ["LIT_COLORIZATION_CACHE"] = previous


@pytest.fixture(scope="session")
def tiny_pretrain_run(tmp_path_factory) -> Path:
    """One finished tiny pretraining run through the CLI, shared by the tests that only read its outputs."""
    runs_dir = tmp_path_factory.mktemp("runs")
    result = run_module("lit_colorization.cli.pretrain", *tiny_pretrain_overrides(runs_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return runs_dir / "tiny"
