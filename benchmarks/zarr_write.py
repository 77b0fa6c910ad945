"""Who writes the pixels: rank 0 alone (.png, .tif) or every rank its own chunks (.zarr).

Two measurements (docs/benchmarks.md, "Output that every rank writes"):

1. End to end, the real engine (the bundled model): ``generate`` of W x H to .png, .tif and .zarr
   with 1 and 2 ranks (torchrun, gloo, one thread a rank: on a shared machine two threads of one
   process spin in each other's barriers, which would bill the one-rank runs for waiting). For each run: wall seconds, CPU
   seconds of all ranks, and the seconds rank 0 spent inside the writer (encoding, compressing,
   writing: the time its writer ran, less the time it waited for tiles, its own or other ranks')
   with that share of rank 0's wall time. Every rank's writing seconds are listed too.
2. The writers alone, at a size where writing is all there is: tiles of a rendered image laid out
   over WW x WH (64 megapixels by default) written by one process (.png, .tif, .zarr with its
   zoom-out levels) and, for .zarr, by 2 processes at once, each its half of the tiles, as two
   ranks do. Megapixels per second per writer: how many ranks' synthesis one rank-0 writer keeps
   up with, and what every rank writing its own chunks changes.

    python benchmarks/zarr_write.py                       # 2048 x 1024 end to end, 16384 x 4096 writers
    python benchmarks/zarr_write.py --width 1024 --height 512 --writer-width 4096 --writer-height 2048
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EXTS = ("png", "tif", "zarr")


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------------- instrumentation
class Clock:
    """Seconds spent in the writer, less the seconds its tile iterator took to produce tiles."""

    def __init__(self):
        self.writing = 0.0

    def wrap_writer(self, fn):
        clock = self

        def timed_pieces(pieces):
            for item in _timed_iter(pieces, clock):
                yield item

        def wrapper(path, width, height, th, tw, pieces, *a, **k):
            t0 = time.perf_counter()
            clock._waiting = 0.0
            try:
                return fn(path, width, height, th, tw, timed_pieces(pieces), *a, **k)
            finally:
                clock.writing += time.perf_counter() - t0 - clock._waiting

        return wrapper

    def wrap_method(self, cls, name):
        fn = getattr(cls, name)
        clock = self

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                clock.writing += time.perf_counter() - t0

        setattr(cls, name, wrapper)


def _timed_iter(pieces, clock):
    it = iter(pieces)
    while True:
        t0 = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            clock._waiting += time.perf_counter() - t0
            return
        clock._waiting += time.perf_counter() - t0
        yield item


def child(args) -> None:
    """One rank of an end-to-end run (under torchrun, or alone)."""
    import torch
    import torch.distributed as dist

    from infinitygan.api import load_model
    from infinitygan.io import zarr_store
    from infinitygan.parallel import chunks, tiles
    from infinitygan.render import RenderOptions, SeedSource, pipeline, render_to_file

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    clock = Clock()
    pipeline.write_tiles = clock.wrap_writer(pipeline.write_tiles)
    tiles.write_tiles = clock.wrap_writer(tiles.write_tiles)
    for name in ("write_tile", "sweep", "mark_complete"):
        clock.wrap_method(zarr_store.ZarrPyramid, name)
    replace = chunks.replace_store

    def timed_replace(*a):
        t0 = time.perf_counter()
        replace(*a)
        clock.writing += time.perf_counter() - t0

    chunks.replace_store = timed_replace
    model = load_model(None)
    region = model.region(args.width, args.height)
    options = RenderOptions(device="cpu", tile=args.tile)
    if world > 1:
        dist.barrier()
    c0, t0 = cpu_seconds(), time.perf_counter()
    render_to_file(model, args.child_out, SeedSource(1), region, options)
    if world > 1:
        dist.barrier()
    wall = time.perf_counter() - t0
    result = {"rank": rank, "world": world, "wall": wall, "cpu": cpu_seconds() - c0, "writing": clock.writing,
              "threads": torch.get_num_threads()}
    Path(f"{args.child_result}.{rank}").write_text(json.dumps(result))
    if world > 1:
        dist.destroy_process_group()


def end_to_end(args, work: Path) -> list[dict]:
    rows = []
    for ranks in (1, 2):
        for ext in EXTS:
            out, res = work / f"e2e-{ranks}.{ext}", work / f"e2e-{ranks}-{ext}"
            env = dict(os.environ, OMP_NUM_THREADS="1",  # one thread a rank: CPU seconds compare as work
                       PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
                   __file__, "--child", "--child-out", str(out), "--child-result", str(res),
                   "--width", str(args.width), "--height", str(args.height), "--tile", str(args.tile)]
            subprocess.run(cmd, check=True, env=env, cwd=work, stdout=subprocess.DEVNULL)
            per_rank = [json.loads(Path(f"{res}.{r}").read_text()) for r in range(ranks)]
            r0 = per_rank[0]
            rows.append({"ext": ext, "ranks": ranks, "wall": max(r["wall"] for r in per_rank),
                         "cpu": sum(r["cpu"] for r in per_rank), "rank0_writing": r0["writing"],
                         "rank0_share": r0["writing"] / r0["wall"], "writing": [r["writing"] for r in per_rank],
                         "threads": r0["threads"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


# ------------------------------------------------------------------------------- writers
def source_image(args, work: Path) -> np.ndarray:
    """A rendered image of the bundled model (float, as the engine yields it): the end-to-end
    run's one-rank .png when there is one, else a fresh render of at most 1024 x 512."""
    png = work / "e2e-1.png"
    if png.is_file():
        from PIL import Image

        return np.asarray(Image.open(png), np.float32) / 127.5 - 1
    from infinitygan.api import load_model

    model = load_model(None)
    w, h = max(min(args.width, 1024), 2 * args.tile), max(min(args.height, 512), 2 * args.tile)
    r = model.region(w, h)
    return model.generate(2, w, h, r.x, r.y)


def _pieces(src: np.ndarray, width: int, height: int, th: int, tw: int, keep=lambda i, j: True):
    """(i, j, y, x, tile) of a row-major grid over width x height, each tile cut from ``src`` at
    a pseudo-random place and turned or mirrored one of 8 ways: no tile repeats its neighbours
    (a compressor would find exact repeats that a real render never has)."""
    rng = np.random.default_rng(0)
    for i in range(-(-height // th)):
        for j in range(-(-width // tw)):
            sy, sx, turn = rng.integers(0, src.shape[0] - th + 1), rng.integers(0, src.shape[1] - tw + 1), rng.integers(8)
            if keep(i, j):
                y, x = i * th, j * tw
                t = src[sy: sy + th, sx: sx + tw]
                t = np.rot90(t[:, ::-1] if turn >= 4 else t, turn % 4)
                yield i, j, y, x, np.ascontiguousarray(t[: min(th, height - y), : min(tw, width - x)])


def write_one(ext: str, src: np.ndarray, width: int, height: int, tile: int, out: Path) -> dict:
    from infinitygan.io.images import png_tile_height, write_tiles
    from infinitygan.io.zarr_store import ZarrPyramid

    c0, t0 = cpu_seconds(), time.perf_counter()
    if ext == "zarr":
        store = ZarrPyramid(out, height, width, tile, tile)
        store.create("bench", "bench")
        for i, j, _, _, px in _pieces(src, width, height, tile, tile):
            store.write_tile(i, j, px)
        store.mark_complete()
    else:
        th = max(tile, png_tile_height(width) // tile * tile) if ext == "png" else tile  # whole tiles a band
        rows = {}
        for i, j, y, x, px in _pieces(src, width, height, tile, tile):
            rows.setdefault(y // th, []).append((y, x, px))

        def pieces():  # the PNG writer takes rows of tiles of its own height
            if ext != "png":
                for _, _, y, x, px in _pieces(src, width, height, tile, tile):
                    yield y, x, px
                return
            for band in range(-(-height // th)):
                y0 = band * th
                h = min(th, height - y0)
                buf = np.empty((h, width, 3), np.float32)
                for y, x, px in rows[band]:
                    buf[y - y0: y - y0 + px.shape[0], x: x + px.shape[1]] = px
                yield y0, 0, buf

        write_tiles(out, width, height, th if ext == "png" else tile, width if ext == "png" else tile, pieces(),
                    force=True)
    return {"wall": time.perf_counter() - t0, "cpu": cpu_seconds() - c0}


def zarr_half(args) -> None:
    """One of two processes writing their halves of the tiles of a store (created beforehand)."""
    from infinitygan.io.zarr_store import ZarrPyramid

    src = np.load(args.half_src)
    store = ZarrPyramid(args.half_out, args.writer_height, args.writer_width, args.tile, args.tile)
    c0, t0 = cpu_seconds(), time.perf_counter()
    for i, j, _, _, px in _pieces(src, args.writer_width, args.writer_height, args.tile, args.tile,
                                  keep=lambda i, j: (i * 10**6 + j) % 2 == args.half):
        store.write_tile(i, j, px)
    Path(args.half_result).write_text(json.dumps({"wall": time.perf_counter() - t0, "cpu": cpu_seconds() - c0}))


def writers(args, work: Path) -> list[dict]:
    from infinitygan.io.zarr_store import ZarrPyramid

    src = source_image(args, work).astype(np.float32)
    W, H, mpx = args.writer_width, args.writer_height, args.writer_width * args.writer_height / 1e6
    rows = []
    for ext in EXTS:
        out = work / f"writer.{ext}"
        r = write_one(ext, src, W, H, args.tile, out)
        size = sum(p.stat().st_size for p in out.rglob("*")) if out.is_dir() else out.stat().st_size
        rows.append({"ext": ext, "writers": 1, **r, "mpx_per_s": mpx / r["wall"], "mb": size / 1e6})
        print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    np.save(work / "src.npy", src)
    out = work / "two.zarr"
    ZarrPyramid(out, H, W, args.tile, args.tile).create("bench", "bench")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    procs = [subprocess.Popen([sys.executable, __file__, "--zarr-half", str(h), "--half-src", str(work / "src.npy"),
                               "--half-out", str(out), "--half-result", str(work / f"half-{h}.json"),
                               "--writer-width", str(W), "--writer-height", str(H), "--tile", str(args.tile)], env=env)
             for h in (0, 1)]
    for p in procs:
        assert p.wait() == 0
    store = ZarrPyramid(out, H, W, args.tile, args.tile)
    c0, t0 = cpu_seconds(), time.perf_counter()
    for k in range(1, store.top + 1):  # what the two left to each other (a barrier, then the sweep)
        store.sweep(k)
    store.mark_complete()
    sweep = time.perf_counter() - t0
    halves = [json.loads((work / f"half-{h}.json").read_text()) for h in (0, 1)]
    wall = max(h["wall"] for h in halves) + sweep  # each timed from its first tile (not its start-up)
    rows.append({"ext": "zarr", "writers": 2, "wall": wall, "cpu": sum(h["cpu"] for h in halves) + cpu_seconds() - c0,
                 "mpx_per_s": mpx / wall, "per_writer_wall": [h["wall"] for h in halves], "sweep": sweep})
    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--writer-width", type=int, default=16384)
    ap.add_argument("--writer-height", type=int, default=4096)
    ap.add_argument("--skip-end-to-end", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--child-result", help=argparse.SUPPRESS)
    ap.add_argument("--zarr-half", type=int, default=None, dest="half", help=argparse.SUPPRESS)
    ap.add_argument("--half-src", help=argparse.SUPPRESS)
    ap.add_argument("--half-out", help=argparse.SUPPRESS)
    ap.add_argument("--half-result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.half is not None:
        return zarr_half(args)
    with tempfile.TemporaryDirectory(prefix="zarr-bench-") as tmp:
        work = Path(tmp)
        e2e = [] if args.skip_end_to_end else end_to_end(args, work)
        w = writers(args, work)
    print(json.dumps({"end_to_end": e2e, "writers": w, "cores": len(os.sched_getaffinity(0))}, indent=1))


if __name__ == "__main__":
    main()
