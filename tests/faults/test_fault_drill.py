"""scripts/fault_drill.sh end to end: every fault case of the real command lines passes (several minutes, slow),
and the first case of every section (QUICK=1, the default suite)."""

import os
import re
import subprocess
import sys

import pytest

from tests.paths import REPO

DRILL = REPO / "scripts" / "fault_drill.sh"


def run_drill(**environment: str) -> tuple[list[str], str, subprocess.CompletedProcess]:
    """The drill's case lines, its closing summary line, and the process."""
    result = subprocess.run(
        ["bash", str(DRILL)],
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "PY": sys.executable, **environment},
    )
    *cases, summary = result.stdout.splitlines() or [""]
    return cases, summary, result


# Slow: one case per section is still one fresh process per section (minutes on 2 busy cores, past the default
# suite's budget); the fast tests of each section's class run in the default suite (tests/faults, tests/data, ...).
@pytest.mark.slow
def test_fault_drill_first_case_of_each_section_passes() -> None:
    sections = re.findall(r"^if want (\w+); then$", DRILL.read_text(), flags=re.MULTILINE)
    cases, summary, result = run_drill(QUICK="1")
    assert [line for line in cases if not line.startswith("PASS ")] == [], (
        result.stdout + result.stderr[-2000:]
    )
    assert len(cases) == len(sections) >= 12 and result.returncode == 0, result.stdout
    assert summary == f"fault drill: {len(cases)} passed, 0 failed (all sections)"


@pytest.mark.slow
def test_fault_drill_passes_every_case() -> None:
    cases, summary, result = run_drill()
    assert [line for line in cases if not line.startswith("PASS ")] == [], (
        result.stdout + result.stderr[-2000:]
    )
    assert summary == f"fault drill: {len(cases)} passed, 0 failed (all sections)"
    assert len(cases) >= 25 and result.returncode == 0
