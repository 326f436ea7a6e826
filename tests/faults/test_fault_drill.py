"""scripts/fault_drill.sh end to end: every fault case of the real command lines passes (several minutes, slow),
and the first case of every section (QUICK=1, the default suite)."""

import os
import re
import subprocess
import sys

import pytest

from tests.paths import REPO

DRILL = REPO / "scripts" / "fault_drill.sh"


def run_drill(**environment: str) -> tuple[list[str], subprocess.CompletedProcess]:
    result = subprocess.run(
        ["bash", str(DRILL)],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PY": sys.executable, **environment},
    )
    return result.stdout.splitlines(), result


def test_fault_drill_first_case_of_each_section_passes() -> None:
    sections = re.findall(r"^if want (\w+); then$", DRILL.read_text(), flags=re.MULTILINE)
    lines, result = run_drill(QUICK="1")
    assert [line for line in lines if not line.startswith("PASS ")] == [], (
        result.stdout + result.stderr[-2000:]
    )
    assert len(lines) == len(sections) >= 12 and result.returncode == 0, result.stdout


@pytest.mark.slow
def test_fault_drill_passes_every_case() -> None:
    lines, result = run_drill()
    assert [line for line in lines if not line.startswith("PASS ")] == [], (
        result.stdout + result.stderr[-2000:]
    )
    assert len(lines) >= 25 and result.returncode == 0
