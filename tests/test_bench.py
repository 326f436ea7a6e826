"""benchmarks/bench.py: a smoke run with tiny settings (no timing asserts) and its FLOP count."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"
TINY = "--device cpu --size 32 --batch 4 --steps 1 --warmup 0 --width 0.125 --images 8 --workers 1 --probe-size 64"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_bench()


@pytest.mark.parametrize("decode", ["cpu", "gpu"])
def test_tiny_run_prints_every_row_and_ratio(bench, capsys: pytest.CaptureFixture[str], decode: str) -> None:
    bench.main([*TINY.split(), "--decode", decode])
    output = capsys.readouterr().out
    for row in "abcdef":
        assert re.search(rf"^\({row}\) .* [\d,]+\.\d", output, re.MULTILINE), (
            f"row ({row}) missing:\n{output}"
        )
    for ratio in ("(b)/(a)", "(c)/(a)", "(c)/(d)", "(f)/(e)"):
        assert re.search(rf"^{re.escape(ratio)} = \d+\.\d\d", output, re.MULTILINE), ratio
    decoder = "PIL in workers" if decode == "cpu" else "device path, CPU decoder"
    assert decoder in output
    assert re.search(r"^FLOPs per image per train step: \d+\.\d\d GFLOP", output, re.MULTILINE)
    assert "MFU: CPU" in output and "peak device memory of (b): n/a (CPU)" in output


def test_flop_count_matches_the_reference_118_gflop_at_176(bench) -> None:
    # REFERENCE.md section 10: one eccv16 train step costs 118 GFLOP per image at 176x176 (192 at 224).
    options = bench.parse_options(["--device", "cpu", "--size", "176", "--width", "1"])
    assert bench.flops_per_image(options) / 1e9 == pytest.approx(118, rel=0.01)
    options = bench.parse_options(["--device", "cpu", "--size", "224", "--width", "1"])
    assert bench.flops_per_image(options) / 1e9 == pytest.approx(192, rel=0.01)


@pytest.mark.parametrize("flags", [["--size", "30"], ["--batch", "0"], ["--device", "tpu"]])
def test_bad_flags_are_refused(bench, flags: list[str]) -> None:
    with pytest.raises(SystemExit) as error:
        bench.parse_options(flags)
    assert error.value.code == 2
