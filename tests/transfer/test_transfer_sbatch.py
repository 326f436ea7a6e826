"""scripts/slurm/transfer.sbatch: the transfer command it starts, and a requeue exactly when the job exits with 75."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.paths import REPO

SCRIPT = REPO / "scripts" / "slurm" / "transfer.sbatch"


def run_script(tmp_path, status: int) -> tuple[int, str, str]:
    """The script under a fake ``srun`` (records its arguments, exits ``status``) and ``scontrol``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(f'#!/bin/bash\necho "$@" > {tmp_path}/srun.args\nexit {status}\n')
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "$@" > {tmp_path}/scontrol.args\n')
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_SUBMIT_DIR": str(REPO),
        "SLURM_JOB_ID": "77",
        "SLURM_JOB_NAME": "transfer",
        "COMMAND": "voc_cls",
        "RUN": "fc6",
        "ARGS": "--preset voc07 train_from=fc6",
    }
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    requeue = tmp_path / "scontrol.args"
    return (
        done.returncode,
        (tmp_path / "srun.args").read_text().strip(),
        requeue.read_text() if requeue.exists() else "",
    )


@pytest.mark.parametrize(("status", "requeued"), [(75, True), (0, False), (2, False)])
def test_the_job_is_requeued_only_after_a_stop_with_its_progress_saved(tmp_path, status, requeued):
    returncode, srun_args, scontrol_args = run_script(tmp_path, status)
    assert returncode == status
    assert srun_args.endswith("-m transfer.cli.voc_cls --preset voc07 train_from=fc6 run=fc6 resume=auto")
    assert (scontrol_args.strip() == "requeue 77") is requeued and (scontrol_args == "") is not requeued
