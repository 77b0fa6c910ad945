"""The render options of every file-writing command, declared once:

    @render_options()                      # --tile --batch --device --dtype --max-memory --force --quiet --nproc
    @click.pass_context
    def cmd(ctx, ..., nproc, **kw):
        options, quiet = options_from(kw)  # a checked RenderOptions (UserError: one line, exit 2)
        ...                                # the command's own checks
        relaunch(ctx, nproc)               # the dispatch: with --nproc N, N ranks run the command line

Parsing has no side effects; running the command line again in N processes is the command's
last step before the work (``parallel.launch.relaunch``), after every check, so a bad option is
reported once by this process, not once per rank.
"""
from __future__ import annotations

import click

NAMES = ("tile", "batch", "device", "dtype", "max_memory", "force", "quiet", "nproc")

NPROC = click.option("--nproc", default=None, type=int,
                     help="run in N local processes that share the work (torch.distributed, like torchrun "
                          "--standalone --nproc_per_node N; one GPU each on CUDA; each rank gets cores // N "
                          "threads unless OMP_NUM_THREADS is set)")


def render_options(device: bool = True, force: bool = True, nproc: bool = True):
    """Decorator adding the render options (``device=False`` where the command already has
    --device, e.g. one shared with an inversion; ``force=False`` where no file is written)."""
    opts = [
        click.option("--tile", default=None, type=int, help="tile size in pixels (rounded to the model's lattice)"),
        click.option("--batch", default=None, type=int, help="tiles per forward pass"),
    ]
    if device:
        opts.append(click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N, mps or auto"))
    opts += [
        click.option("--dtype", default="float32", show_default=True, help="float32, bfloat16 or float16"),
        click.option("--max-memory", default=None, type=float,
                     help="working-memory budget in MB that picks the default tile (default: 256 on CPU, 1/4 of "
                          "the GPU)"),
    ]
    if force:
        opts.append(click.option("--force", is_flag=True,
                                 help="write even if the uncompressed output exceeds the free disk space"))
    opts.append(click.option("--quiet", is_flag=True, help="no progress bar"))
    if nproc:
        opts.append(NPROC)

    def decorate(f):
        for o in reversed(opts):
            f = o(f)
        return f

    return decorate


def options_from(kw: dict):
    """Pop the render options from a command's keyword arguments: (RenderOptions, quiet). No side
    effects: ``--nproc`` is the command's own parameter, for its dispatch (``relaunch``)."""
    from .options import RenderOptions

    quiet = bool(kw.pop("quiet", False))
    options = RenderOptions(tile=kw.pop("tile", None), batch=kw.pop("batch", None), device=kw.pop("device", "auto"),
                            dtype=kw.pop("dtype", "float32"), max_memory_mb=kw.pop("max_memory", None),
                            progress=not quiet, force=kw.pop("force", False))
    return options, quiet
