"""Where a training step's time goes: torch.profiler over bench.py's rows (a), (b) and (c0), same options.

    python benchmarks/profile_step.py [bench.py's options]

For each row: wall time per step, the device's busy time per step (the sum of its kernels; on CUDA only) and
the operators that cost most, sorted by self time on the device (on a CPU, on the host), and on CUDA also by
self time on the host, where runtime calls that make the host wait show. Run it where a row of
bench.py misses its target: a device busy well under the wall time means the host or the loader limits the
step; otherwise the top kernels say what to fuse or drop.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench import (
    Options,
    build_module,
    end_to_end_step,
    loader_for,
    parse_options,
    random_targets,
    synchronize,
    train_step,
    write_jpegs,
)
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from lit_colorization.data.encoded import DeviceCropper, EncodedCollate, EncodedImageFolderDataset

PROFILED_STEPS = 5
TOP_OPERATORS = 15


def profile_row(name: str, step: Callable[[], int], options: Options) -> list[str]:
    for _ in range(max(options.warmup, 2)):
        step()
    synchronize(options.device)
    cuda = options.device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as profiler:
        start = time.perf_counter()
        for _ in range(PROFILED_STEPS):
            step()
        synchronize(options.device)
        wall = (time.perf_counter() - start) / PROFILED_STEPS
    averages = profiler.key_averages()
    lines = [f"--- {name}: {1e3 * wall:.2f} ms a step under the profiler (batch {options.batch})"]
    if cuda:
        busy = sum(event.self_device_time_total for event in averages if event.device_type == DeviceType.CUDA)
        busy_ms = busy / 1e3 / PROFILED_STEPS
        lines.append(
            f"device busy {busy_ms:.2f} ms a step = {100 * busy_ms / (1e3 * wall):.0f}% of the wall time"
        )
    sort_key = "self_device_time_total" if cuda else "self_cpu_time_total"
    lines += averages.table(sort_by=sort_key, row_limit=TOP_OPERATORS, max_name_column_width=60).splitlines()
    if cuda:  # where the host spends its time: runtime calls that wait (cudaStreamSynchronize, ...) show here
        lines.append("host side, by self CPU time:")
        table = averages.table(
            sort_by="self_cpu_time_total", row_limit=TOP_OPERATORS, max_name_column_width=60
        )
        lines += table.splitlines()
    return lines


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    torch.set_num_threads(options.threads)
    module, optimizer = build_module(options)
    targets = random_targets(options, module.targets.bins.shape[0])
    lines = profile_row("(a) model step", lambda: train_step(module, optimizer, targets), options)
    rgb = torch.randint(0, 256, (options.batch, 3, options.size, options.size), dtype=torch.uint8)
    rgb = rgb.to(options.device)
    lines += profile_row(
        "(b) targets + step", lambda: train_step(module, optimizer, module.targets(rgb)), options
    )
    with tempfile.TemporaryDirectory(prefix="profile-jpegs-") as workdir:
        folder = Path(workdir)
        write_jpegs(folder, 2 * options.batch)
        batches = loader_for(EncodedImageFolderDataset(folder, "train"), options, EncodedCollate())
        step = end_to_end_step(module, optimizer, batches, DeviceCropper(options.size))
        lines += profile_row("(c0) JPEG bytes -> device decode and crop -> targets + step", step, options)
        del batches
    for line in lines:
        print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
