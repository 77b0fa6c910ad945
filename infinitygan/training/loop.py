"""The InfinityGAN training loop (paper Section 3.5).

Iteration t (0-based; the run has done t + 1 iterations afterwards) takes the real batch of t,
runs the due phases of the phase table (``phases``: D, lazy R1, G, lazy path length), then updates
the EMA of G with ``ema_decay``. Every random input of t is a function of (seed, t, phase)
(``inputs``) and the data position of t is arithmetic (``data.ResumableSampler``), so a resumed
run needs only the newest checkpoint (weights, Adam state, EMA, iteration, path-length mean) and,
in deterministic CPU mode, reproduces the uninterrupted run bit for bit. With W processes
(torchrun) each computes the losses of its B / W samples and DDP averages the gradients: the same
update as one process on the global batch, up to float rounding.

A run stops at its last iteration, when ``max_nonfinite`` consecutive iterations had a skipped
step (UserError naming the last good checkpoint), or at SIGINT / SIGTERM: the current iteration
finishes, a checkpoint is written and ``train`` returns with ``interrupted`` set.

Under ``torchrun --max-restarts K`` a worker that dies (killed, crashed, mid-iteration or while a
checkpoint is written) ends the group: every other rank's next collective fails, which it reports
as one line (``LostPeer``, exit 1), and torchrun starts the group again. The restarted ranks
resume from the newest complete checkpoint by themselves (``elastic_restart_resumes``), exactly
as ``--resume`` would (same checks), so the weights equal an uninterrupted run's.
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import torch

from ..api import resolve_device
from ..config import ModelConfig
from ..errors import UserError
from ..io import runs
from ..io.checkpoint import read_metadata
from ..io.images import save_image
from ..parallel import env as dist_
from . import state as S
from ..data.datasets import open_dataset
from ..data.patches import PatchDataset
from ..data.sampling import endless_batches
from .inputs import BatchPlan
from .memory import check_training_memory
from .monitor import POSTFIX, RunLog, render_sample_grid
from .nets import build_nets, ema_update
from .options import RunOptions, cpu_threads, default_workers, keep_freed_memory
from .phases import Stats, TrainingLoss, colour_pairs_only, uses_pairs

#: checkpoint metadata: the TORCHELASTIC_RUN_ID of the torchrun job that wrote it
ELASTIC_RUN = "elastic_run"


class StopSignals:
    """SIGINT / SIGTERM ask the loop to stop after the current iteration; a second one stops at
    once (KeyboardInterrupt). Installed only in the main thread."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)


def train(cfg: ModelConfig, data: str, run_dir: str | Path, seed: int | None = None, resume: bool = False,
          options: RunOptions = RunOptions(), init: tuple[dict, dict] | None = None) -> dict:
    """Train (or resume) the run in ``run_dir``; returns a summary dict.

    The trajectory: ``cfg`` (model and training config, its batch size and total ``iterations``
    included), ``seed`` (default 0, or the run's on resume: weights, random inputs, data order)
    and ``data`` ("procedural", an image folder or an LMDB: ``open_dataset``). ``options``: how
    it runs. Distributed when launched by torchrun (WORLD_SIZE > 1). ``init``: (checkpoint
    tensors, metadata) to start a NEW run from (``official_init.official_training_state``: the
    authors' training checkpoint), in place of fresh weights.

    Returns {"iteration", "images_seen", "checkpoint", "nan_skips", "seconds_per_iteration",
    "fingerprint" (sha256 of this rank's G, D, G_ema), "rank", "world_size", "interrupted"
    (None, or the name of the signal that stopped the run)}.
    """
    run = Path(run_dir)
    dev = resolve_device(options.device)
    if options.workers is None:
        options = dataclasses.replace(options, workers=default_workers(dev))
    _, world, _ = dist_.env_world()
    error = seed_ckpt = dataset = None
    try:  # every rank checks for itself; under torchrun the errors are gathered, naming the node
        seed_ckpt = _starting_point(cfg, run, seed, resume, init)
        tc = cfg.training
        if tc.batch_size % world:
            raise UserError(f"global batch {tc.batch_size} is not divisible by the {world} processes")
        if tc.full_size < cfg.generator.patch_size:
            raise UserError(f"full_size {tc.full_size} is smaller than the patch size {cfg.generator.patch_size}")
        dataset = open_dataset(data, tc.full_size, tc.pre_resize, seed=0)  # bad data: before any work
        check_training_memory(cfg, dataset, options.workers, tc.batch_size // world)
    except UserError as e:
        if world == 1:
            raise
        error = str(e)

    prev_det, prev_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    if options.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    ctx = dist_.setup(dev)
    prev_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    # the signals are only noted over the clean-up too: torchrun's SIGTERM to the survivors of a
    # lost worker must not turn their one LostPeer line into a KeyboardInterrupt
    with StopSignals() as stop:
        try:
            if ctx.device.type == "cpu":
                torch.set_num_threads(cpu_threads(options.workers, ctx.world_size))
                if options.keep_freed_memory:  # the train command's process only: glibc cannot undo it
                    keep_freed_memory()  # no page faults on every iteration's reallocated activations
            if ctx.device.type == "cuda" and options.tf32:
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            if ctx.distributed:  # a cluster: the same run folder, data and checkpoint on every node
                dist_.check_setup(ctx, error)
                dist_.check_shared_folder(ctx, run, "the run folder")
                dist_.check_same(ctx, f"the number of images in {data!r}", len(dataset))
                at = int(seed_ckpt[1][1].get("iteration", 0)) if seed_ckpt[1] is not None else 0
                dist_.check_same(ctx, f"the iteration to start from (the checkpoints of {run})", at)
            seed, ckpt = seed_ckpt
            del seed_ckpt
            try:
                return _run(cfg, dataset, run, seed, ctx, options, ckpt, stop)
            except Exception as e:
                if ctx.distributed and dist_.is_lost_peer(e):
                    raise dist_.lost_peer(ctx, e) from None
                raise
        finally:
            torch.set_num_threads(prev_threads)
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev_tf32
            dist_.teardown(ctx)
            if options.deterministic:
                torch.use_deterministic_algorithms(prev_det)


def _starting_point(cfg: ModelConfig, run: Path, seed: int | None, resume: bool,
                    init: tuple[dict, dict] | None) -> tuple[int, tuple[dict, dict] | None]:
    """(seed, (tensors, metadata) to start from or None): the resume checks (``--resume``, or a
    group that torchrun restarted), or a new run in an empty ``run`` (from ``init`` if given)."""
    S.check_writable_dir(run)
    existing = runs.list_checkpoints(run)
    ckpt = None
    if not resume and existing and elastic_restart_resumes(run):
        resume = True  # torchrun restarted the group after a lost worker: continue, as --resume would
    if resume:
        if not existing:
            raise UserError(f"nothing to resume: {run} has no checkpoint")
        _, state, ckpt_cfg, meta = runs.load_newest_checkpoint(run)
        S.check_resume_config(run, cfg, ckpt_cfg)
        run_seed = int(meta.get("seed", 0))
        if seed is not None and int(seed) != run_seed:
            raise UserError(f"cannot resume {run} with --seed {seed}: the run was started with seed {run_seed}")
        seed, ckpt = run_seed, (state, meta)
    elif existing:
        raise UserError(f"{run} already holds checkpoints: use --resume to continue it, or another --out")
    elif init is not None:
        ckpt = init
    return (0 if seed is None else int(seed)), ckpt


def elastic_restart_resumes(run: Path) -> bool:
    """True when this process belongs to a group that torchrun's elastic agent restarted
    (TORCHELASTIC_RESTART_COUNT > 0) and the newest readable checkpoint of ``run`` was written by
    the same elastic job (its TORCHELASTIC_RUN_ID): then the run continues from it by itself.

    The job check keeps a restart from taking over a run the first start refused (an --out that
    already held another run's checkpoints: the same refusal again). Rank 0 says it in one line.
    """
    if dist_.restart_count() == 0 or dist_.elastic_run_id() is None:
        return False
    for path in reversed(runs.list_checkpoints(run)):  # the header is enough: the resume reads the rest
        try:
            meta = read_metadata(path)
        except UserError:  # unreadable: the resume falls back past it, and so do we
            continue
        if meta.get(ELASTIC_RUN) != dist_.elastic_run_id():
            return False
        break
    else:
        return False
    if dist_.env_world()[0] == 0:
        print(f"infinitygan: torchrun restart {dist_.restart_count()}: resuming {run} from {path.name}",
              file=sys.stderr, flush=True)
    return True


def _run(cfg: ModelConfig, dataset, run: Path, seed: int, ctx: dist_.DistContext, opts: RunOptions, ckpt,
         stop: StopSignals) -> dict:
    tc, total = cfg.training, cfg.training.iterations
    every_ckpt = opts.checkpoint_every or tc.checkpoint_every
    every_sample = opts.sample_every or tc.sample_every
    every_log = opts.log_every or tc.log_every
    if ctx.is_main:
        for sub in (runs.CHECKPOINTS, runs.LOGS, runs.SAMPLES):
            (run / sub).mkdir(parents=True, exist_ok=True)
        S.remove_stray_parts(run)
        S.write_config(run, cfg)
    dist_.barrier(ctx)

    nets = build_nets(cfg, ctx, seed, checkpoint_activations=opts.checkpoint_activations)
    prog = S.restore(nets, *ckpt) if ckpt is not None else S.Progress()
    origin = ckpt[1].get("init_from") if ckpt is not None else None  # a fork's or an import's source, kept
    del ckpt
    b, group = tc.batch_size // ctx.world_size, cfg.discriminator.mbstd_group
    if ctx.is_main and ctx.distributed and group > 1 and b % group:
        warnings.warn(f"mbstd_group {group} does not divide the per-process batch {b}: "
                      "minibatch-stddev groups differ from a one-process run", stacklevel=2)
    if ctx.is_main and len(dataset) < tc.batch_size:
        warnings.warn(f"{len(dataset)} images, fewer than one batch of {tc.batch_size}: "
                      "images repeat within batches (few-shot training)", stacklevel=2)
    patches = PatchDataset(dataset, patch=cfg.generator.patch_size, seed=seed)
    batches = endless_batches(patches, tc.batch_size, opts.workers, ctx.rank, ctx.world_size, seed=seed,
                              start_iteration=prog.iteration)
    stats = Stats()
    plan = BatchPlan.make(cfg, nets.G.geometry, seed, ctx, pairs=uses_pairs(cfg),
                          own_phase=colour_pairs_only(cfg))
    loss = TrainingLoss(cfg, nets, plan, ctx, opts.autocast, prog, stats)
    log = RunLog(run / runs.LOGS if ctx.is_main else None)
    bar = None
    if ctx.is_main and not opts.quiet:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=prog.iteration, unit="it", desc="train", dynamic_ncols=True, mininterval=1.0)
    last_ckpt = (runs.list_checkpoints(run) or [None])[-1]
    saved_at = prog.iteration
    t_start = t_log = time.perf_counter()
    it_start = it_log = prog.iteration
    last_logged: dict[str, float | None] = {}
    ckpt_due = False

    def checkpoint(done: int) -> None:
        nonlocal last_ckpt, saved_at
        if ctx.distributed:  # the replicas must agree bit for bit
            prints = dist_.all_gather_objects(ctx, nets.fingerprint())
            if len(set(prints)) != 1:
                raise RuntimeError(f"replicas diverged at iteration {done}: parameters differ between ranks")
        tensors = S.checkpoint_tensors(nets, prog) if ctx.is_main else None
        dist_.barrier(ctx)
        if ctx.is_main:
            meta = {"iteration": str(done), "images_seen": str(done * tc.batch_size), "seed": str(seed),
                    "world_size": str(ctx.world_size),
                    "progress": {"nan_skips": prog.nan_skips, "nan_streak": prog.nan_streak,
                                 "skipped": prog.skipped, "passes": done * tc.batch_size // len(dataset),
                                 "global_batch": tc.batch_size, "last": last_logged}}
            if origin:
                meta["init_from"] = origin
            if dist_.elastic_run_id() is not None:  # which torchrun job wrote it (elastic restarts)
                meta[ELASTIC_RUN] = dist_.elastic_run_id()
            last_ckpt = S.save_checkpoint(run, done, tensors, cfg, meta, keep=opts.keep, keep_every=opts.keep_every)
        saved_at = done
        dist_.barrier(ctx)

    try:
        for t in range(prog.iteration, total):
            real, real_label = (x.to(ctx.device, non_blocking=True) for x in next(batches))
            if ctx.device.type == "cpu":  # oneDNN convolutions run faster in NHWC (CPU only)
                real = real.contiguous(memory_format=torch.channels_last)
            ok = all([loss.run(ph, t, real, real_label) for ph in loss.phases if ph.due(t)])
            ema_update(nets.G_ema, nets.G, tc.ema_decay)

            done = prog.iteration = t + 1
            prog.nan_streak = 0 if ok else prog.nan_streak + 1
            if not ok and ctx.is_main:
                msg = f"iteration {done}: non-finite loss or gradient, optimizer step skipped ({prog.nan_streak} in a row)"
                bar.write(msg) if bar is not None else warnings.warn(msg, stacklevel=1)
            if prog.nan_streak >= opts.max_nonfinite:
                raise UserError(f"training diverged: {prog.nan_streak} consecutive non-finite steps at iteration "
                                f"{done}; last good checkpoint: {last_ckpt if last_ckpt else 'none'}")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(stats.running(POSTFIX), refresh=False)
            if done % every_log == 0 or done == total:
                now = time.perf_counter()
                spi = (now - t_log) / max(done - it_log, 1)
                t_log, it_log = now, done
                values = stats.reduce(ctx)
                values.update({"speed/sec_per_iteration": spi, "speed/images_per_second": tc.batch_size / spi,
                               "nan/skips_total": prog.nan_skips, "nan/streak": prog.nan_streak})
                last_logged = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
                log.scalars(values, done)
            # periodic checkpoints wait while steps are being skipped, so that the newest
            # checkpoints (and the one the divergence message names) predate the trouble
            ckpt_due = ckpt_due or done % every_ckpt == 0
            if (ckpt_due and prog.nan_streak == 0) or done == total:
                checkpoint(done)
                ckpt_due = False
            if opts.samples and ctx.is_main and (done % every_sample == 0 or done == total):
                save_image(runs.sample_path(run, done), render_sample_grid(nets.G_ema, cfg, ctx.device))
            if dist_.any_true(ctx, stop.received is not None):
                if saved_at != done:
                    checkpoint(done)
                break
    finally:
        if bar is not None:
            bar.close()
        log.close()
        del batches
    n_done = prog.iteration - it_start
    interrupted = signal.Signals(stop.received).name if stop.received is not None else None
    return {"iteration": prog.iteration, "images_seen": prog.iteration * tc.batch_size,
            "checkpoint": str(last_ckpt) if last_ckpt else None, "nan_skips": prog.nan_skips,
            "seconds_per_iteration": (time.perf_counter() - t_start) / n_done if n_done else None,
            "fingerprint": nets.fingerprint(), "rank": ctx.rank, "world_size": ctx.world_size,
            "interrupted": interrupted}
