"""Weighted k-nearest-neighbour classification of features against a labelled bank (Wu et al. 2018).

Each query's ``k`` most cosine-similar bank entries vote for their labels with weight ``exp(similarity / T)``
(``k=20``, ``T=0.07`` by default); the class with the largest total wins.

Under DDP each rank holds its own shard of the bank, so no rank ever holds the whole of it. For every batch of
queries the ranks all-gather the queries (a few hundred kilobytes), each scores all of them against its own
shard and keeps the ``k`` best (similarity, label) pairs per query, then those candidates are all-gathered and
each rank merges the ``world_size * k`` candidates of its own queries into the same ``k`` a single bank would
give. Four all-gathers per batch and layer (batch sizes, queries, candidates' similarities and labels), sized by
the queries and ``k``, never by the bank.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def top_k_neighbours(queries: Tensor, bank: Tensor, bank_labels: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(similarities, labels) of the ``k`` bank entries nearest each query, best first: (Q, k) each.

    Rows of ``queries`` and ``bank`` must be unit vectors. A bank smaller than ``k`` pads with similarity
    -inf, which weighs nothing in ``vote``.
    """
    similarities = queries @ bank.to(queries.dtype).T
    count = min(k, bank.shape[0])
    best, indices = similarities.float().topk(count, dim=1)
    labels = bank_labels[indices]
    if count < k:
        padding = k - count
        best = F.pad(best, (0, padding), value=float("-inf"))
        labels = F.pad(labels, (0, padding), value=0)
    return best, labels


def vote(similarities: Tensor, labels: Tensor, num_classes: int, temperature: float) -> Tensor:
    """The predicted class of each query from its neighbours' (Q, k) similarities and labels."""
    weights = (similarities / temperature).exp()
    votes = torch.zeros(similarities.shape[0], num_classes, device=similarities.device)
    return votes.scatter_add_(1, labels, weights).argmax(dim=1)


def knn_predict(
    queries: Tensor,
    bank: Tensor,
    bank_labels: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> Tensor:
    """Classes of ``queries`` (Q, D) by weighted kNN against this process's ``bank`` (N, D), rows unit vectors.

    Under an initialised process group with several ranks, ``bank`` is this rank's shard and the vote is over
    the neighbours in every rank's shard (see the module docstring); every rank must call this for each batch.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        similarities, labels = top_k_neighbours(queries, bank, bank_labels, k)
        return vote(similarities, labels, num_classes, temperature)
    world_size, rank = dist.get_world_size(), dist.get_rank()
    sizes = _all_gather(torch.tensor([queries.shape[0]], device=queries.device))
    longest = int(sizes.max())
    # all_gather needs equal shapes: every rank pads its queries to the longest batch.
    padded = F.pad(queries, (0, 0, 0, longest - queries.shape[0]))
    everyone = _all_gather(padded).reshape(world_size * longest, -1)
    similarities, labels = top_k_neighbours(everyone, bank, bank_labels, k)
    # (world, world * longest, k): every shard's candidates for every query; keep those for this rank's own.
    own = slice(rank * longest, rank * longest + queries.shape[0])
    candidates = _all_gather(similarities)[:, own].permute(1, 0, 2).reshape(queries.shape[0], -1)
    candidate_labels = _all_gather(labels)[:, own].permute(1, 0, 2).reshape(queries.shape[0], -1)
    best, position = candidates.topk(k, dim=1)
    return vote(best, candidate_labels.gather(1, position), num_classes, temperature)


def _all_gather(tensor: Tensor) -> Tensor:
    """(world_size, *tensor.shape): every rank's ``tensor``, stacked in rank order."""
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.stack(gathered)
