"""Write an image folder as LitData shards: ``python -m lit_colorization.cli.shards --data ROOT --out OUT``.

``make shards DATA=... OUT=...``; training reads them with ``data.source=shards data.root=OUT``
(lit_colorization/data/shards.py).
"""

from __future__ import annotations

import argparse
import os
import time

from lit_colorization.cli.common import run_cli


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write an image folder's splits as LitData shards")
    parser.add_argument("--data", required=True, help="the image folder, holding <split>/ for each split")
    parser.add_argument("--out", required=True, help="where the shards go (a new folder or s3://...)")
    parser.add_argument("--splits", default="train,val", help="comma-separated splits (default: train,val)")
    parser.add_argument("--chunk-bytes", default="64MB", help="size of each chunk file (default: 64MB)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="writer processes")
    parser.add_argument("--val-images", type=int, default=None, help="of val, only N evenly spaced images")
    parser.add_argument(
        "--index-cache", default="auto", help="data.index_cache for listing the folder ('null': none)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)

    def write() -> None:
        if args.workers < 1:
            raise ValueError(f"--workers must be at least 1; got {args.workers}")
        if args.val_images is not None and args.val_images < 1:
            raise ValueError(f"--val-images must be at least 1; got {args.val_images}")
        from lit_colorization.data.shards import write_shards

        splits = [split for split in args.splits.split(",") if split]
        started = time.perf_counter()
        counts = write_shards(
            args.data,
            args.out,
            splits,
            chunk_bytes=args.chunk_bytes,
            workers=args.workers,
            index_cache=None if args.index_cache == "null" else args.index_cache,
            val_images=args.val_images,
        )
        written = ", ".join(f"{split} {count} images" for split, count in counts.items())
        print(f"shards of {args.data} in {args.out}: {written} ({time.perf_counter() - started:.1f} s)")
        print(
            f"train from them with: make pretrain SHARDS={args.out} (data.source=shards data.root={args.out})"
        )

    run_cli(write)


if __name__ == "__main__":
    main()
