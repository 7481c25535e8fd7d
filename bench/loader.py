"""Clip loader throughput: 20-frame 64x64 clips per second.

(a) gathered from an in-memory numpy array (the reference), (b) from the store with the
in-memory cache, (c) streaming from the store without cache, (d) streaming one rank's rows of
the training order (`rows=`), all in one run on one store. Then the store reads of one epoch
split between W = 1, 2, 4 ranks: each rank reading only its rows, against every rank reading the
whole global batch (the loader before `rows=`), in frames read per frame stored.

    python bench/loader.py [--videos 200 --length 100 --batch 64 --seconds 5] [--json out.json]
    python bench/loader.py --smoke     # tiny sizes, seconds: the script's own check (tests run it)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Table  # noqa: E402
from pipeline.datasets.moving_mnist import generate  # noqa: E402
from pipeline.io.loader import ClipDataset  # noqa: E402
from pipeline.io.store import FrameStore  # noqa: E402

CLIP = 20


def clips_per_second(make_iter, seconds: float) -> float:
    """Clips/s over whole passes, at least `seconds` long (first pass included: no warm-up)."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for batch in make_iter():
            n += len(batch)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--store", default=None, help="reuse this store instead of a temporary one")
    ap.add_argument("--json", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the script")
    args = ap.parse_args()
    if args.smoke:
        args.videos, args.length, args.batch, args.seconds = 4, 2 * CLIP, 8, 0.2

    tmp = tempfile.TemporaryDirectory()
    url = args.store or str(Path(tmp.name) / "bench.zarr")
    store = FrameStore.create(url)
    for vid, frames, attrs in generate(args.videos, args.length, seed=0):
        if vid not in store:
            store.write_video(vid, frames, attrs)
    store.consolidate()
    store = FrameStore.open(url)
    ids = store.video_ids()[: args.videos]

    # (a) reference: the same clips gathered from one numpy array already in memory
    data = np.concatenate([store.frames(v) for v in ids])
    lengths = np.array([store.num_frames(v) for v in ids])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    starts = np.concatenate([o + np.arange(n - CLIP + 1) for o, n in zip(offsets, lengths)])
    idx = np.arange(CLIP)
    rng = np.random.default_rng(0)

    def numpy_epoch():
        order = starts[rng.permutation(len(starts))]
        for b in range(0, len(order), args.batch):
            yield data[order[b : b + args.batch, None] + idx]

    cached = ClipDataset(url, CLIP, args.batch, split=None, video_ids=ids, cache=True)
    streaming = ClipDataset(url, CLIP, args.batch, split=None, video_ids=ids, cache=False)

    table = Table(f"loader: {CLIP}-frame 64x64 clips, {len(ids)} videos x {args.length} frames")
    table.add("numpy in-memory gather", clips_per_second(numpy_epoch, args.seconds), "clips/s")
    table.add(
        "store, cached",
        clips_per_second(lambda: iter(cached), args.seconds),
        "clips/s",
        "numpy in-memory gather",
    )
    table.add(
        "store, streaming",
        clips_per_second(lambda: iter(streaming), args.seconds),
        "clips/s",
        "numpy in-memory gather",
    )
    own_rows = ClipDataset(
        url, CLIP, args.batch, split=None, video_ids=ids, cache=False, rows=(0, args.batch)
    )
    table.add(
        "store, streaming, training order (rows)",
        clips_per_second(lambda: iter(own_rows), args.seconds),
        "clips/s",
        "numpy in-memory gather",
    )

    stored = int(lengths.sum())
    whole = ClipDataset(url, CLIP, args.batch, split=None, video_ids=ids, cache=False)
    for _ in whole:
        pass
    for ranks in (1, 2, 4):
        per_rank = args.batch // ranks
        read = 0
        for r in range(ranks):
            ds = ClipDataset(
                url,
                CLIP,
                args.batch,
                split=None,
                video_ids=ids,
                cache=False,
                rows=(r * per_rank, (r + 1) * per_rank),
            )
            for _ in ds:
                pass
            read += ds.frames_read
        # before rows=: every rank read the whole global batch and kept its slice
        table.add(
            f"one epoch, {ranks} ranks, whole batch each",
            ranks * whole.frames_read / stored,
            "x store",
        )
        table.add(
            f"one epoch, {ranks} ranks, own rows",
            read / stored,
            "x store",
            f"one epoch, {ranks} ranks, whole batch each",
        )
    table.print()
    table.write(
        args.json,
        goals={
            "store, cached": ">= 0.5x reference",
            "store, streaming": ">= 2000 clips/s",
            "one epoch, 4 ranks, own rows": "<= 1.1x store (read once between the ranks)",
        },
    )


if __name__ == "__main__":
    main()
