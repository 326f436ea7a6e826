"""requirements/ci.lock (make lock, scripts/lock.py) pins every package make setup installs, within pyproject.toml's
bounds: a dependency added or re-bounded without `make lock` fails here, not in someone's fresh set-up."""

from __future__ import annotations

import importlib.util
import re

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.paths import REPO

tomllib = pytest.importorskip(
    "tomllib", reason="reading pyproject.toml needs Python 3.11 (the lock's Python)"
)


def setup_extras() -> list[str]:
    """The Makefile's SETUP_EXTRAS: the extras make setup installs and make lock pins."""
    [line] = [
        line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith("SETUP_EXTRAS :=")
    ]
    return line.split(":=")[1].strip().split(",")


def pins() -> dict[str, str]:
    pinned = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "requirements" / "ci.lock").read_text(), re.M)
    return {canonicalize_name(name): version for name, version in pinned}


def test_the_lock_pins_every_requirement_of_every_extra_make_setup_installs_within_its_bounds():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert sorted(setup_extras()) == sorted(
        extras
    )  # make setup installs every extra, so the lock holds them all
    locked = pins()
    for text in [*project["dependencies"], *(line for name in setup_extras() for line in extras[name])]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{text}: not in requirements/ci.lock (run make lock)"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{text}: requirements/ci.lock pins {locked[name]} (run make lock)"
        )


def test_the_compile_line_takes_pips_indexes_and_constraints():
    spec = importlib.util.spec_from_file_location("lock", REPO / "scripts" / "lock.py")
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    settings = {
        "extra-index-url": ["file:///a/simple", "file:///b/simple"],
        "find-links": ["/wheels"],
        "constraint": ["/etc/caps.txt"],
    }
    command = lock.compile_command(["dev", "coco"], "out.lock", settings)
    line = " ".join(command[1:])
    assert line.startswith("pip compile pyproject.toml --quiet --output-file out.lock --python-version 3.")
    assert "--extra dev --extra coco" in line and "--index-strategy unsafe-best-match" in line
    assert line.endswith(
        "--extra-index-url file:///a/simple --extra-index-url file:///b/simple --find-links /wheels "
        "--constraint /etc/caps.txt"
    )
