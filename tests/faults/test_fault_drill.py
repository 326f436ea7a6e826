"""scripts/fault_drill.sh end to end: every fault case of the real command lines passes (several minutes)."""

import subprocess

import pytest

from tests.paths import REPO


@pytest.mark.slow
def test_fault_drill_passes_every_case() -> None:
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "fault_drill.sh")], capture_output=True, text=True, timeout=3600
    )
    *cases, summary = result.stdout.splitlines()
    assert [line for line in cases if not line.startswith("PASS ")] == [], (
        result.stdout + result.stderr[-2000:]
    )
    assert summary == f"fault drill: {len(cases)} passed, 0 failed (all sections)"
    assert len(cases) >= 25 and result.returncode == 0
