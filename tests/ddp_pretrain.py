"""Run by test_ddp.py as a script: tiny pretrainings on two CPU processes (gloo), each rank recording what it saw.

``lightning RUNS_DIR RECORD_DIR``: Lightning's DDP launcher (devices=2), as a user's multi-GPU run. Three runs in
one launch: ``whole`` to the end, ``stopped`` (SIGUSR1 to rank 1 only, during step ``STOP_STEP``) and its resume.
The launcher starts rank 1 by running this same script again, so it must stay importable and self-contained.

``cli RECORD_DIR [--preset NAME] key=value ...``: the pretrain command's own ``main``, with the recorder added; what
``torchrun`` starts once per node in the multi-node test.
"""

import hashlib
import json
import os
import signal
import sys
from pathlib import Path

from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_colorization.cli.pretrain import main  # noqa: E402
from lit_colorization.pretrain.pretrain_config import PRETRAIN  # noqa: E402
from lit_colorization.pretrain.pretraining import pretrain  # noqa: E402
from lit_colorization.runtime.preemption import RunPreempted  # noqa: E402
from tests.helpers import tiny_pretrain_overrides  # noqa: E402

STOP_STEP = 1  # inside epoch 0: 16 images make two steps of the global batch of 8


def ddp_overrides(runs_dir: Path, run: str) -> list[str]:
    """The runs compared by test_ddp.py: a global batch of 8 (4 per rank on two), the lr and schedule given for a
    reference batch of 4 and scaled linearly: 8 reference steps = 4 steps, the lr drop after 2."""
    return [
        *tiny_pretrain_overrides(runs_dir, run),
        "data.batch_size=8",
        "optim.reference_batch_size=4",
        "optim.lr_scaling=linear",
        "optim.milestones=[4]",
        "trainer.max_steps=8",
        "trainer.val_check_interval=4",
    ]


class RecordSteps(Callback):
    """Appends, per training step, the digests of this rank's images and the lr to ``<out>/<run>-rank<N>.jsonl``."""

    def __init__(self, out: Path, run: str) -> None:
        self.out, self.run = out, run

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        record = {
            "step": trainer.global_step,
            "ids": [hashlib.sha1(image.cpu().numpy().tobytes()).hexdigest() for image in batch["rgb"]],
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
        }
        with (self.out / f"{self.run}-rank{trainer.global_rank}.jsonl").open("a") as stream:
            stream.write(json.dumps(record) + "\n")


class SignalRankOne(Callback):
    """Sends SIGUSR1 to rank 1 alone while it trains step ``step``: both ranks must still stop after that step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.global_step == self.step - 1:
            os.kill(os.getpid(), signal.SIGUSR1)


def lightning_runs(runs_dir: Path, record_dir: Path) -> None:
    ddp = ["trainer.devices=2", "trainer.strategy=ddp", "optim.fused=true"]
    whole = PRETRAIN.load("sample", [*ddp_overrides(runs_dir, "whole"), *ddp])
    pretrain(whole, extra_callbacks=[RecordSteps(record_dir, "whole")])
    stopped = [*ddp_overrides(runs_dir, "stopped"), *ddp, "logger.kind=none"]
    try:
        pretrain(PRETRAIN.load("sample", stopped), extra_callbacks=[SignalRankOne(STOP_STEP)])
    except RunPreempted as stop:
        (record_dir / f"preempted-rank{os.environ.get('LOCAL_RANK', '0')}.txt").write_text(
            f"{stop.step} {stop.code}\n"
        )
    pretrain(PRETRAIN.load("sample", [*stopped, "resume=auto"]))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "lightning":
        lightning_runs(Path(sys.argv[2]), Path(sys.argv[3]))
    elif mode == "cli":
        main(sys.argv[3:], extra_callbacks=[RecordSteps(Path(sys.argv[2]), "cli")])
    else:
        sys.exit(f"unknown mode {mode!r}: expected 'lightning' or 'cli'")
