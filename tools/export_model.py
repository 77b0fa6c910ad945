"""Ship a training checkpoint as a model file: its G_ema and its config under a new name.

    python tools/export_model.py RUN/checkpoints/ckpt-00012750.safetensors \
        infinitygan/assets/landscapes-tiny.safetensors --name landscapes-tiny

How the bundled model is made from the checkpoint that SWD picked (docs/training.md, "The bundled
model"). The file holds tensors only (safetensors) with the config as metadata, and records the
source checkpoint's iteration and images seen; `infinitygan info FILE` shows it.
"""
from __future__ import annotations

import argparse
import dataclasses

from infinitygan.errors import UserError
from infinitygan.io.checkpoint import save_model_file
from infinitygan.io.runs import generator_state, is_training_checkpoint, load_model_or_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a training checkpoint (or a run folder: its newest)")
    ap.add_argument("out", help="the model file to write (*.safetensors)")
    ap.add_argument("--name", required=True, help="the config's name in the model file, e.g. landscapes-tiny")
    args = ap.parse_args()
    try:
        path, state, cfg, meta = load_model_or_run(args.checkpoint)
        if not is_training_checkpoint(meta):
            raise UserError(f"{path} is a model file already, not a training checkpoint")
        extra = {k: meta[k] for k in ("iteration", "images_seen") if k in meta}
        out = save_model_file(args.out, generator_state(state, meta), dataclasses.replace(cfg, name=args.name), extra)
    except UserError as e:  # a missing or corrupt checkpoint, an unwritable or misnamed output
        raise SystemExit(f"export_model.py: {e}") from None
    print(f"{out}: G_ema of {path} (iteration {meta.get('iteration')}), config {args.name}")


if __name__ == "__main__":
    main()
