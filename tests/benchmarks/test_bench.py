"""benchmarks/bench.py: a smoke run with tiny settings (no timing asserts) and its FLOP count."""

from __future__ import annotations

import importlib.util
import re
import sys
from types import SimpleNamespace

import pytest

from tests.paths import REPO

BENCH = REPO / "benchmarks" / "bench.py"
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
    for row in ("a", "b", "c", "c0", "d", "e", "f", "g", "h"):
        found = re.search(rf"^\({row}\) +.* ([\d,]+\.\d)", output, re.MULTILINE)
        assert found, f"row ({row}) missing:\n{output}"
        assert float(found[1].replace(",", "")) > 0, f"row ({row}) measured nothing:\n{output}"
    for ratio in ("(b)/(a)", "(c)/(a)", "(c)/(d)", "(f)/(e)", "(c)/(c0)"):
        found = re.search(rf"^{re.escape(ratio)} = (\d+\.\d\d)", output, re.MULTILINE)
        assert found and float(found[1]) > 0, f"{ratio} missing:\n{output}"
    assert re.search(r"^\(c\) +end to end, pretrain\(\)'s Lightning loop", output, re.MULTILINE)
    assert re.search(r"^\(h\) +probe end to end: probe\(\) on JPEGs, conv1..conv5", output, re.MULTILINE)
    assert re.search(r"^\(h\) +probe end to end: probe\(\) on JPEGs, conv1..conv5", output, re.MULTILINE)
    assert "(Lightning loop overhead; no target)" in output
    found = re.search(
        r"^step time with online eval / without, \(b\)/\(g\) = (\d+\.\d{3})", output, re.MULTILINE
    )
    assert found and float(found[1]) > 0, output
    decoder = "PIL in workers" if decode == "cpu" else "device path, CPU decoder"
    assert decoder in output
    assert re.search(r"^FLOPs per image per train step: \d+\.\d\d GFLOP", output, re.MULTILINE)
    assert "MFU: CPU" in output and "peak device memory of (b): n/a (CPU)" in output
    assert "host waits for the device in (c): n/a (CPU)" in output
    # The presets users run, each beside its network's model-only step at the same batch (the CPU's sizes).
    for model, preset in (("eccv16", "eccv16_imagenet"), ("alexnet", "alexnet_imagenet")):
        for key, label in (
            (f"a-{model}", f"{model} model step, batch 4, 32x32"),
            (f"c-{model}", f"{preset} end to end"),
        ):
            found = re.search(rf"^\({key}\) {label}.* ([\d,]+\.\d)$", output, re.MULTILINE)
            assert found and float(found[1].replace(",", "")) > 0, f"row ({key}) missing:\n{output}"
        found = re.search(rf"^\(c-{model}\)/\(a-{model}\) = (\d+\.\d\d)", output, re.MULTILINE)
        assert found and float(found[1]) > 0, output
    assert re.search(
        r"^  checkpoint: \d+\.\d\d s of the step's time per write, every 10 min", output, re.MULTILINE
    )
    found = re.search(
        r"^\(c-eccv16\) with data.decode_ahead=false ([\d,.]+), =true ([\d,.]+) images/s",
        output,
        re.MULTILINE,
    )
    assert found and min(float(found[1].replace(",", "")), float(found[2].replace(",", ""))) > 0, output
    assert "(h) probe end to end" in output and "not measured here" in output
    for key in ("k", "k0"):
        found = re.search(rf"^\({key} *\) .* ([\d,]+\.\d)$", output, re.MULTILINE)
        assert found and float(found[1].replace(",", "")) > 0, f"row ({key}) missing:\n{output}"
    assert re.search(r"^\(k\)/\(k0\) = \d+\.\d\d$", output, re.MULTILINE), output
    for key in ("l", "l0", "lk"):
        found = re.search(
            rf"^\({key} *\) sRGB -> Lab.* ([\d,]+\.\d)   host waits per call: n/a", output, re.MULTILINE
        )
        assert found and float(found[1].replace(",", "")) > 0, f"row ({key}) missing:\n{output}"
    found = re.search(
        r"^\(l\)/\(l0\) = \d+\.\d\d; max \|\(l\) - \(l0\)\| = (\S+) Lab units", output, re.MULTILINE
    )
    assert found and float(found[1]) < 1e-3, output


def test_step_clock_times_whole_steps_after_warm_up_and_before_the_final_checkpoint(
    bench, monkeypatch
) -> None:
    # Steps 2 and 3 are timed: from the end of step 1 (the last warm-up step) to the end of step 3.
    ticks = iter(range(100, 200))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: float(next(ticks)))
    clock = bench.StepClock(warmup=2, steps=2)
    module = SimpleNamespace(device=bench.torch.device("cpu"))
    for step, images in enumerate([4, 4, 3, 4, 4]):  # the fit goes on for one step past the window
        trainer = SimpleNamespace(global_step=step)
        batch = {"rgb": bench.torch.zeros(images, 3, 8, 8)}
        clock.on_train_batch_start(trainer, module, batch, step)
        trainer.global_step = step + 1  # the optimizer step of this batch
        clock.on_train_batch_end(trainer, module, None, batch, step)
    assert (clock.images, clock.seconds) == (7, 1.0)
    assert clock.rate() == 7.0


def test_step_clock_refuses_a_fit_that_stopped_early(bench) -> None:
    with pytest.raises(RuntimeError, match="nothing was timed"):
        bench.StepClock(warmup=1, steps=3).rate()


def test_flop_count_matches_the_reference_118_gflop_at_176(bench) -> None:
    # docs/reference.md section 10: one eccv16 train step costs 118 GFLOP per image at 176x176 (192 at 224).
    options = bench.parse_options(["--device", "cpu", "--size", "176", "--width", "1"])
    assert bench.flops_per_image(options) / 1e9 == pytest.approx(118, rel=0.01)
    options = bench.parse_options(["--device", "cpu", "--size", "224", "--width", "1"])
    assert bench.flops_per_image(options) / 1e9 == pytest.approx(192, rel=0.01)


@pytest.mark.parametrize("flags", [["--size", "30"], ["--batch", "0"], ["--device", "tpu"]])
def test_bad_flags_are_refused(bench, flags: list[str]) -> None:
    with pytest.raises(SystemExit) as error:
        bench.parse_options(flags)
    assert error.value.code == 2


def test_host_waits_are_counted_by_the_line_that_made_the_host_wait(bench) -> None:
    def caught(filename: str, lineno: int) -> object:
        return SimpleNamespace(filename=filename, lineno=lineno)

    site = "/opt/venv/lib/python3.12/site-packages/lightning/pytorch/core/module.py"
    assert bench.wait_place(caught(site, 662)) == "lightning/pytorch/core/module.py:662"
    ours = "/work/repo/lit_colorization/pretrain/module.py"
    assert bench.wait_place(caught(ours, 126)) == "lit_colorization/pretrain/module.py:126"
    assert bench.wait_place(caught("/tmp/elsewhere/script.py", 3)) == "script.py:3"
