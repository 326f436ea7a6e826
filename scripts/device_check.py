"""Every CUDA path of the project once, on one lent GPU, in one short run (docs/benchmarks.md, "Device check").

Parts, each ending in one ``PASS``/``FAIL`` line; a failure does not stop the others:

1. functional, side by side (none of them is timed):
   - pytest: the tests CPU machines skip (nvJPEG decode, batches prepared ahead on a side stream, one-pass crops
     on the device, Lab without host waits, the on-device guard, perf settings) and the colour, target, metric
     and checkpoint tests on CUDA;
   - pretrain: eccv16 at 176 from a generated JPEG tree (several sizes, one corrupt file) with the
     eccv16_imagenet preset (GPU decode, bf16, channels_last, compile), killed (SIGKILL) right after its first
     ``last.ckpt`` and resumed with ``resume=auto`` to step 300: the step count, the lr and a finite, falling loss
     are checked; then ``colorize`` of a folder and ``eval-color`` with two temperatures from its checkpoint;
   - linear-probe (AlexNet, every layer, one epoch), voc-cls and voc-det (the generated VOC, 50 steps);
2. ``benchmarks/bench.py --rows core`` at the paper's sizes, alone on the GPU (rows (a) to (g), the Lab rows);
3. ``benchmarks/bench.py --rows presets``: ``eccv16_imagenet`` and ``alexnet_imagenet`` as shipped through
   ``pretrain``, each beside its model-only step at the same batch, and eccv16's with the next batch prepared
   in series with the step;
4. ``benchmarks/profile_step.py``: where the time of a training step goes.

``--quick`` shrinks every size so the whole script runs on a CPU in a few minutes: a rehearsal of the commands,
not a check of CUDA. Everything printed is also written to ``$OUT/check.txt`` (or ``--out``); each part's own
output goes to ``parts.log`` beside it.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata

REPO = Path(__file__).resolve().parent.parent
PHOTOS = (skdata.astronaut, skdata.coffee, skdata.chelsea, skdata.rocket)
# (width, height): ImageNet's common shapes, a large photo and one smaller than the 256 resize
JPEG_SIZES = ((500, 375), (375, 500), (640, 480), (1024, 768), (200, 150))
CLASSES = ("class_a", "class_b", "class_c")
PRETRAIN_STEPS = 300
CHECKPOINT_EVERY = 100
QUICK_PHASE_FACTOR = 3.0  # --quick: each phase may take this many times its seconds
ECCV16_LR = 3e-5  # eccv16's recipe lr at its own batch of 40 (docs/reference.md section 5)


class Report:
    """Lines to stdout and the report file, whole lines only, from any thread."""

    def __init__(self, out: Path) -> None:
        self.lock = threading.Lock()
        self.text = (out / "check.txt").open("a")
        self.parts = (out / "parts.log").open("a")
        self.verdicts: list[str] = []
        self.deadline = math.inf  # time.monotonic() by which the current phase's commands must end

    def seconds_left(self) -> float:
        return max(5.0, self.deadline - time.monotonic())

    def line(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)
            self.text.write(text + "\n")
            self.text.flush()

    def verdict(self, name: str, passed: bool, detail: str) -> None:
        text = f"{'PASS' if passed else 'FAIL'} {name}: {detail}"
        self.verdicts.append(text)
        self.line(text)

    def part_output(self, name: str, output: str) -> None:
        with self.lock:
            self.parts.write(f"\n===== {name} =====\n{output}\n")
            self.parts.flush()


def run_logged(report: Report, name: str, command: list[str]) -> tuple[int, str]:
    """Run ``command`` in the repository; (exit code, output). 124 when it ran past the phase's deadline."""
    start = time.perf_counter()
    timeout = report.seconds_left()
    try:
        result = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=child_env()
        )
        code, output = result.returncode, result.stdout + result.stderr
    except subprocess.TimeoutExpired as expired:
        code = 124
        output = (expired.stdout or b"").decode(errors="replace") + (expired.stderr or b"").decode(
            errors="replace"
        )
    report.part_output(
        f"{name} (exit {code}, {time.perf_counter() - start:.0f} s): {' '.join(command)}", output
    )
    return code, output


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}


NOISE = ("site-packages/", "warnings.warn", "Warning:", "`Trainer.fit` stopped")


def tail(output: str, lines: int = 3) -> str:
    """The last lines the command itself printed, past library warnings."""
    kept = [
        line.strip() for line in output.splitlines() if line.strip() and not any(n in line for n in NOISE)
    ]
    return " | ".join(kept[-lines:])[-600:]


def guarded(report: Report, name: str, part: Callable[[], None]) -> None:
    """A part that raises is one FAIL line, not the end of the check."""
    try:
        part()
    except Exception as error:  # noqa: BLE001 - every failure is reported, the other parts go on
        report.verdict(name, False, f"{type(error).__name__}: {error}")


# --- generated data ------------------------------------------------------------------------------------------


def write_jpeg_tree(root: Path, train_per_class: int, val_per_class: int) -> Path:
    """``root/{train,val}/<class>/*.jpg`` cut from scikit-image's photos at several sizes, and one corrupt file."""
    rng = np.random.default_rng(0)
    photos = [photo() for photo in PHOTOS]
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                photo = photos[(index + label) % len(photos)]
                width, height = JPEG_SIZES[index % len(JPEG_SIZES)]
                side = int(min(photo.shape[:2]) * rng.uniform(0.6, 1.0))
                top = int(rng.integers(0, photo.shape[0] - side + 1))
                left = int(rng.integers(0, photo.shape[1] - side + 1))
                window = Image.fromarray(photo[top : top + side, left : left + side])
                window.resize((width, height), Image.Resampling.BILINEAR).save(
                    folder / f"{index:04d}.jpg", quality=90
                )
    corrupt = root / "train" / CLASSES[0] / "corrupt.jpg"
    corrupt.write_bytes((root / "train" / CLASSES[0] / "0000.jpg").read_bytes()[:2000])
    return root


# --- parts ---------------------------------------------------------------------------------------------------


def part_pytest(report: Report, quick: bool) -> None:
    files = [
        "tests/color/test_cuda_color.py",
        "tests/data/test_encoded.py",
        "tests/data/test_crop_scale.py",
        "tests/data/test_fused_crop.py",
        "tests/data/test_prepared_ahead.py",
        "tests/runtime/test_perf.py",
        "tests/runtime/test_guards.py",
        "tests/runtime/test_checkpoint_cadence.py",
    ]
    code, output = run_logged(
        report, "pytest", [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *files]
    )
    cuda_skips = [line for line in output.splitlines() if line.startswith("SKIPPED") and "CUDA" in line]
    passed = code == 0 and (quick or not cuda_skips)
    report.verdict(
        "pytest (CUDA decode, one-pass crops, batches prepared ahead, guard, checkpoints, perf; colour, targets, "
        "metrics on cuda)",
        passed,
        tail(output, 1),
    )
    for line in cuda_skips[:5]:
        report.line(f"  {line}")


def pretrain_command(data: Path, runs: Path, quick: bool, resume: bool) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "lit_colorization.cli.pretrain",
        "--preset",
        "eccv16_imagenet",
        f"data.root={data}",
        f"runs_dir={runs}",
        "run=gpu-eccv16",
        f"trainer.max_steps={PRETRAIN_STEPS}",
        f"trainer.checkpoint_every_n_steps={CHECKPOINT_EVERY}",
        f"trainer.val_check_interval={CHECKPOINT_EVERY}",
        "data.max_val_images=24",
        "trainer.log_every_n_steps=10",
        "trainer.devices=1",
        "logger.kind=csv",
        "num_val_images_logged=4",
    ]
    if quick:
        command += [
            "model.kwargs.width=0.125",
            "data.crop_size=64",
            "data.num_workers=2",
            "trainer.max_steps=30",
        ]
        command += ["trainer.checkpoint_every_n_steps=10", "trainer.val_check_interval=10"]
        # Losses enough to list (30 steps at every 10 logged three).
        command += ["trainer.log_every_n_steps=2"]
    return command + (["resume=auto"] if resume else [])


def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["global_step"])


def logged_rows(run_dir: Path) -> list[dict[str, str]]:
    rows = []
    for metrics in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        with metrics.open() as file:
            rows += list(csv.DictReader(file))
    return rows


def part_pretrain(report: Report, data: Path, work: Path, quick: bool) -> Path | None:
    """Kill a run right after its first last.ckpt, resume it, check steps, lr and loss; its checkpoint."""
    name = "pretrain (eccv16 176, GPU decode, bf16, channels_last, compile; killed, resumed)"
    runs = work / "runs"
    last = runs / "gpu-eccv16" / "checkpoints" / "last.ckpt"
    steps = 30 if quick else PRETRAIN_STEPS
    start = time.perf_counter()
    log = (work / "pretrain-leg1.log").open("w")
    process = subprocess.Popen(
        pretrain_command(data, runs, quick, resume=False),
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_env(),
        start_new_session=True,
    )
    while process.poll() is None and not last.exists() and time.monotonic() < report.deadline:
        time.sleep(0.02)
    killed = process.poll() is None
    if killed:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    log.close()
    leg1 = (work / "pretrain-leg1.log").read_text(errors="replace")
    report.part_output(
        f"pretrain leg 1 (exit {process.returncode}, {time.perf_counter() - start:.0f} s)", leg1
    )
    if not last.exists():
        report.verdict(name, False, f"no last.ckpt after leg 1 (exit {process.returncode}): {tail(leg1)}")
        return None
    saved = checkpoint_step(last)
    report.line(
        f"  leg 1: {'killed (SIGKILL)' if killed else f'ended by itself (exit {process.returncode})'} "
        f"at {time.perf_counter() - start:.0f} s, last.ckpt at step {saved}"
    )
    code, leg2 = run_logged(report, "pretrain leg 2", pretrain_command(data, runs, quick, resume=True))
    final = checkpoint_step(last) if last.exists() else -1
    rows = logged_rows(runs / "gpu-eccv16")
    losses = [(int(row["step"]), float(row["train/loss"])) for row in rows if row.get("train/loss")]
    lrs = [
        (int(row["step"]), float(value))
        for row in rows
        for key, value in row.items()
        if key.startswith("lr") and value
    ]
    finite = bool(losses) and all(math.isfinite(loss) for _, loss in losses)
    first = np.mean([loss for _, loss in losses[:3]]) if losses else math.nan
    final_losses = np.mean([loss for _, loss in losses[-3:]]) if losses else math.nan
    last_lr = max(lrs)[1] if lrs else math.nan
    passed = (
        killed
        and code == 0
        and final == steps
        and finite
        # --quick: 30 steps at eccv16's lr 3e-5 are too few for the loss to fall reliably; only the run is checked.
        and (final_losses < first or quick)
        and math.isclose(last_lr, ECCV16_LR, rel_tol=1e-6)
    )
    report.verdict(
        name,
        passed,
        f"leg 2 exit {code}, resumed from step {saved} to step {final} (want {steps}); loss {first:.3f} -> "
        f"{final_losses:.3f} over {len(losses)} logged steps{' (falling not required by --quick)' if quick else ''}, "
        f"all finite: {finite}; lr at the end {last_lr:.3g} "
        f"(want {ECCV16_LR:g}); {tail(leg2, 2)}",
    )
    return last


def part_colorize_and_eval(
    report: Report, checkpoint: Path | None, data: Path, work: Path, quick: bool
) -> None:
    if checkpoint is None:
        report.verdict("colorize", False, "no checkpoint from the pretrain part")
        report.verdict("eval-color", False, "no checkpoint from the pretrain part")
        return
    out = work / "colorized"
    command = [
        sys.executable,
        "-m",
        "lit_colorization.cli.colorize",
        "--ckpt",
        str(checkpoint),
        "--out",
        str(out),
    ]
    code, output = run_logged(report, "colorize", [*command, str(data / "val")])
    written = sorted(out.rglob("*.png"))
    wanted = len(list((data / "val").rglob("*.jpg")))
    report.verdict(
        "colorize (a folder, on cuda)",
        code == 0 and len(written) == wanted,
        f"{len(written)}/{wanted} PNGs; {tail(output, 2)}",
    )
    results = work / "results" / "colorization.jsonl"
    code, output = run_logged(
        report,
        "eval-color",
        [
            sys.executable,
            "-m",
            "lit_colorization.cli.eval_color",
            f"out_dir={work / 'eval-color'}",
            f"results={results}",
            "study_images=4",
            "logger.kind=csv",
            "device=cuda" if not quick else "device=auto",
            "--ckpt",
            str(checkpoint),
            "--data",
            str(data),
            "--temperatures",
            "0.38",
            "1.0",
        ],
    )
    report.verdict("eval-color (two temperatures, on cuda)", code == 0 and results.exists(), tail(output, 4))


def transfer_overrides(work: Path, run: str) -> list[str]:
    return [
        f"runs_dir={work / 'runs'}",
        f"results={work / 'results' / 'transfer.jsonl'}",
        f"run={run}",
        "logger.kind=csv",
    ]


def part_probe(report: Report, data: Path, work: Path, quick: bool) -> None:
    command = [
        sys.executable,
        "-m",
        "transfer.cli.probe",
        "--preset",
        "imagenet",
        "ckpt=random",
        "model=alexnet",
        f"data.root={data}",
        "layer=all",
        "schedule.unit=epoch",
        "schedule.length=1",
        "data.batch_size=64",
        *transfer_overrides(work, "gpu-probe"),
    ]
    if quick:
        command += ["data.num_workers=2", "trainer.limit_train_batches=2", "data.batch_size=8"]
    code, output = run_logged(report, "linear-probe", command)
    report.verdict("linear-probe (alexnet, every layer, one epoch)", code == 0, tail(output, 4))


def part_voc(report: Report, work: Path, command: str, quick: bool) -> None:
    steps = 5 if quick else 50
    code, output = run_logged(
        report,
        command,
        [
            sys.executable,
            "-m",
            f"transfer.cli.{command.replace('-', '_')}",
            "ckpt=random",
            "model=alexnet",
            f"data.tiny.cache_dir={work / 'voc'}",
            f"trainer.max_steps={steps}",
            *transfer_overrides(work, f"gpu-{command}"),
        ],
    )
    report.verdict(f"{command} (generated VOC, {steps} steps)", code == 0, tail(output, 3))


def part_benchmark(
    report: Report, name: str, script: str, title: str, quick: bool, extra: tuple[str, ...] = ()
) -> None:
    """A script of benchmarks/ on the device (on the CPU with ``quick``), its whole output in the report."""
    device = "cpu" if quick else "cuda"
    command = [sys.executable, f"benchmarks/{script}", "--device", device, *extra]
    code, output = run_logged(report, name, command)
    for line in output.splitlines():
        report.line(f"  {line}")
    report.verdict(title, code == 0, f"exit {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "device-check")))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: rehearse the commands on a CPU")
    parser.add_argument(
        "--phases",
        type=float,
        nargs=4,
        default=(200.0, 160.0, 170.0, 45.0),
        metavar=("FUNCTIONAL", "BENCH", "PRESETS", "PROFILE"),
        help="seconds each phase may take at most (its commands are stopped then and reported FAIL); "
        "the defaults add up to 575, under a device call's 600 (--quick: 3 times as long)",
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=("pretrain", "transfer", "bench", "presets", "profile")
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(args.out)
    report.line(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda {torch.cuda.is_available()}"
    )
    if torch.cuda.is_available():
        report.line(f"device {torch.cuda.get_device_name()}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="device-check-") as workdir:
        work = Path(workdir)
        # A rehearsal on a shared CPU has no device time to save, and its commands run several times slower.
        scale = QUICK_PHASE_FACTOR if args.quick else 1.0
        functional, bench, presets, profiling = (seconds * scale for seconds in args.phases)
        if {"pretrain", "transfer"} - set(args.skip):
            report.deadline = time.monotonic() + functional
            data = write_jpeg_tree(work / "jpegs", 16 if args.quick else 100, 2 if args.quick else 8)
            report.line(
                f"data: {len(list(data.rglob('*.jpg')))} JPEGs under {data} ({time.perf_counter() - start:.0f} s)"
            )

            def pretraining() -> None:
                checkpoint = None

                def train() -> None:
                    nonlocal checkpoint
                    checkpoint = part_pretrain(report, data, work, args.quick)

                guarded(report, "pretrain", train)
                guarded(
                    report,
                    "colorize/eval-color",
                    lambda: part_colorize_and_eval(report, checkpoint, data, work, args.quick),
                )

            def transfer() -> None:
                guarded(report, "pytest", lambda: part_pytest(report, args.quick))
                guarded(report, "linear-probe", lambda: part_probe(report, data, work, args.quick))
                guarded(report, "voc-cls", lambda: part_voc(report, work, "voc-cls", args.quick))
                guarded(report, "voc-det", lambda: part_voc(report, work, "voc-det", args.quick))

            chosen = {"pretrain": pretraining, "transfer": transfer}
            threads = [
                threading.Thread(target=part) for name, part in chosen.items() if name not in args.skip
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            report.line(f"functional parts done at {time.perf_counter() - start:.0f} s")
        if "bench" not in args.skip:
            report.deadline = time.monotonic() + bench
            guarded(
                report,
                "bench",
                lambda: part_benchmark(
                    report, "bench", "bench.py", "bench (paper sizes)", args.quick, ("--rows", "core")
                ),
            )
        if "presets" not in args.skip:
            report.deadline = time.monotonic() + presets
            guarded(
                report,
                "bench presets",
                lambda: part_benchmark(
                    report,
                    "bench presets",
                    "bench.py",
                    "bench: eccv16_imagenet and alexnet_imagenet as shipped, beside their model steps",
                    args.quick,
                    ("--rows", "presets"),
                ),
            )
        if "profile" not in args.skip:
            report.deadline = time.monotonic() + profiling
            guarded(
                report,
                "profile",
                lambda: part_benchmark(
                    report, "profile", "profile_step.py", "profile of a training step", args.quick
                ),
            )
    report.line(f"\n== summary ({time.perf_counter() - start:.0f} s) ==")
    for verdict in report.verdicts:
        report.line(verdict[:300])


if __name__ == "__main__":
    main()
