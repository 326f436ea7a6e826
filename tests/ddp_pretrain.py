"""Run by test_ddp.py as a script: a tiny pretraining with two CPU processes (gloo), each rank recording what it saw.

Lightning's DDP launcher starts rank 1 by running this same script again, so it must stay importable and
self-contained.
"""

import hashlib
import sys
from pathlib import Path

from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_colorization.train.pretrain_config import PRETRAIN  # noqa: E402
from lit_colorization.train.pretraining import pretrain  # noqa: E402
from tests.conftest import tiny_pretrain_overrides  # noqa: E402


class RecordSamples(Callback):
    """Appends a digest of every training image a rank sees to ``<out>/rank<N>.txt``."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        digests = [hashlib.sha1(image.cpu().numpy().tobytes()).hexdigest() for image in batch["rgb"]]
        with (self.out / f"rank{trainer.global_rank}.txt").open("a") as stream:
            stream.write("".join(f"{digest}\n" for digest in digests))


if __name__ == "__main__":
    runs_dir, record_dir = Path(sys.argv[1]), Path(sys.argv[2])
    overrides = [
        *tiny_pretrain_overrides(runs_dir, run="ddp"),
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_steps=2",  # 16 images / (2 ranks x batch 4): exactly one epoch
        "trainer.val_check_interval=2",
        # Fused Adam, as on CUDA: the non-finite guard's flag then travels by all-reduce, without host waits.
        "optim.fused=true",
    ]
    pretrain(PRETRAIN.load("sample", overrides), extra_callbacks=[RecordSamples(record_dir)])
