"""Soft-encoding throughput: SoftEncoder against the exact reference and scikit-learn (the original release).

    python benchmarks/bench_color.py [--pixels N] [--k 5] [--repeats 3] [--device cpu] [--threads T]

All methods encode the ab of scikit-image's sample photos (shipped offline), repeated to ``--pixels``; the two
references that measure every pixel against all 313 bins get the first ``--reference-pixels`` of them (their
rate per pixel does not depend on the count, and the full count would take minutes). Each time is the best of
``--repeats`` runs after a warm-up. scikit-learn keeps its defaults (n_jobs=None, one job) and does what the
original Caffe layer did: a ball tree on the bins, k nearest, then Gaussian weights in numpy.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from skimage import data
from sklearn.neighbors import NearestNeighbors

from lit_colorization.color import SoftEncoder, ab_bins, soft_encode_exact, uint8_to_lab

# Pixels per call of the exact reference, which holds a pixels x 313 matrix.
EXACT_CHUNK = 16384
PHOTOS = (data.astronaut, data.coffee, data.chelsea, data.rocket, data.retina)


def photo_ab(pixels: int, device: torch.device) -> torch.Tensor:
    """1 x 2 x 1 x pixels ab: every pixel of the sample photos, repeated until there are enough."""
    ab = [
        uint8_to_lab(torch.from_numpy(photo()).permute(2, 0, 1)[None])[0, 1:].reshape(2, -1)
        for photo in PHOTOS
    ]
    flat = torch.cat(ab, dim=1)
    repeats = -(-pixels // flat.shape[1])
    return flat.repeat(1, repeats)[:, :pixels].reshape(1, 2, 1, pixels).contiguous().to(device)


def best_time(run: Callable[[], object], repeats: int, device: torch.device) -> float:
    def timed() -> float:
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed()
    return min(timed() for _ in range(repeats))


def sklearn_soft_encode(
    points: np.ndarray, neighbours: NearestNeighbors, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    distances, indices = neighbours.kneighbors(points)
    weights = np.exp(-(distances**2) / (2 * sigma**2))
    return indices, weights / weights.sum(axis=1, keepdims=True)


def cdist_topk(
    ab: torch.Tensor, bins: torch.Tensor, k: int, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The usual GPU approach: full distance matrix, top-k (ties in no fixed order), Gaussian weights."""
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    distances, indices = torch.cdist(points, bins).topk(k, dim=1, largest=False)
    return indices, torch.softmax(distances.square() / (-2 * sigma**2), dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=262144, help="pixels encoded per run (default 262144)")
    parser.add_argument(
        "--reference-pixels",
        type=int,
        default=32768,
        help="pixels for the all-bins references (default 32768)",
    )
    parser.add_argument("--k", type=int, default=5, help="nearest bins per pixel (default 5)")
    parser.add_argument("--sigma", type=float, default=5.0, help="Gaussian width in ab units (default 5)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per method; the best counts (default 3)"
    )
    parser.add_argument("--device", default="cpu", help="torch device for the torch methods (default cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args()
    if min(args.pixels, args.reference_pixels, args.repeats, args.threads or 1) < 1:
        parser.error("--pixels, --reference-pixels, --repeats and --threads must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    bins = ab_bins().to(device)
    ab = photo_ab(args.pixels, device)
    encoder = SoftEncoder(bins, k=args.k, sigma=args.sigma).to(device)
    reference_ab = ab[..., : args.reference_pixels]
    chunks = reference_ab.split(EXACT_CHUNK, dim=3)
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2).double().cpu().numpy()
    neighbours = NearestNeighbors(n_neighbors=args.k, algorithm="ball_tree").fit(bins.double().cpu().numpy())

    cpu, everything, reference = torch.device("cpu"), args.pixels, reference_ab.shape[3]
    with torch.no_grad():
        gap = max(
            (encoder(c) - soft_encode_exact(c, bins, args.k, args.sigma)).abs().max().item() for c in chunks
        )
        # (name, output per pixel, device it runs on, pixels it encodes, the run)
        methods = [
            ("SoftEncoder.encode_sparse", "k", device, everything, lambda: encoder.encode_sparse(ab)),
            ("SoftEncoder (dense)", "Q", device, everything, lambda: encoder(ab)),
            (
                "soft_encode_exact (dense)",
                "Q",
                device,
                reference,
                lambda: [soft_encode_exact(c, bins, args.k, args.sigma) for c in chunks],
            ),
            (
                "cdist + topk",
                "k",
                device,
                reference,
                lambda: [cdist_topk(c, bins, args.k, args.sigma) for c in chunks],
            ),
            (
                "sklearn ball tree + numpy",
                "k",
                cpu,
                everything,
                lambda: sklearn_soft_encode(points, neighbours, args.sigma),
            ),
        ]
        rates = {name: count / best_time(run, args.repeats, on) for name, _, on, count, run in methods}

    print(
        f"soft-encoding {args.pixels} photo pixels, k={args.k}, sigma={args.sigma}, Q={len(bins)}, device={device}, "
        f"torch threads={torch.get_num_threads()}, SoftEncoder candidates per pixel={encoder.num_candidates}"
    )
    print(f"max |SoftEncoder - soft_encode_exact| over the {reference} reference pixels: {gap:.1e}")
    fast = rates["SoftEncoder.encode_sparse"]
    print(f"{'method':<28} {'output':<16} {'device':<8} {'pixels':>8} {'pixels/s':>12} {'fast / this':>12}")
    for name, output, on, count, _ in methods:
        row = f"{name:<28} {output + ' per pixel':<16} {on.type:<8} {count:>8} {rates[name]:>12,.0f}"
        print(f"{row} {fast / rates[name]:>12.1f}")
    print(f"fast / exact:   {fast / rates['soft_encode_exact (dense)']:.1f}x")
    print(f"fast / sklearn: {fast / rates['sklearn ball tree + numpy']:.1f}x")


if __name__ == "__main__":
    main()
