"""The presets are package data: a wheel carries them, and an installed (non-editable) copy finds them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.paths import REPO

PRESETS = sorted(
    str(path.relative_to(REPO)).replace("configs/", "lit_colorization/configs/", 1)
    for path in (REPO / "configs").rglob("*.yaml")
)


def test_a_wheel_carries_every_preset_and_its_commands_list_them(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the checkout
    for part in ("lit_colorization", "transfer", "configs"):
        shutil.copytree(
            REPO / part, source / part, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / part, source / part)
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("lit_colorization-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(PRESETS) <= names, sorted(set(PRESETS) - names)

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, "-m", "lit_colorization.cli.pretrain", "--help"]
    shown = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "alexnet_imagenet, eccv16_imagenet, resnet50_imagenet, sample" in " ".join(shown.stdout.split())
    where = subprocess.run(
        [sys.executable, "-c", "import lit_colorization.config.loading as l; print(l.CONFIG_DIR)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.stdout.strip() == str(target / "lit_colorization" / "configs")
