"""Run by test_online_eval.py as a script: the weighted kNN with its bank split over two gloo ranks.

Each rank holds half the bank and its own share of the queries (of unequal sizes) and writes its predictions
to ``<folder>/rank<N>.pt``.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lit_colorization.online_eval.knn import knn_predict  # noqa: E402

WORLD_SIZE = 2


def rank_main(rank: int, folder: Path) -> None:
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    data = torch.load(folder / "data.pt")
    bank_half = slice(rank, None, WORLD_SIZE)
    query_split = 6  # rank 0 takes 6 queries, rank 1 the rest
    queries = data["queries"][:query_split] if rank == 0 else data["queries"][query_split:]
    predicted = knn_predict(
        queries, data["bank"][bank_half], data["labels"][bank_half], 5, k=20, temperature=0.07
    )
    torch.save(predicted, folder / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(rank_main, args=(Path(sys.argv[1]),), nprocs=WORLD_SIZE)
