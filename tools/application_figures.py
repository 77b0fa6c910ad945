"""Pictures of docs/applications.md (all but the inversion ones) from a model.

    python tools/application_figures.py [--model MODEL] [--out docs/applications] [--only NAME,...]

Each picture is rendered with the `infinitygan generate` command shown in the docs (run in
this process through `infinitygan.cli.main`, PNG into a temporary folder), then composed and
saved as JPEG (quality 85):

- fusion-4-styles.jpg (4096x192): the image itself.
      generate --seed 6 --style 6@-1536,2 --style 2@-512,2 --style 7@512,2 --style 10@1536,2
               --width 4096 --height 192
- mask.jpg (1024x512): top, the image; bottom, the scene's masks (white) at their places.
      generate --scene docs/applications/mask-scene.yaml
- cyclic-1024-tiled-twice.jpg (2048x192): one period, placed twice side by side (the seam in
  the middle is the wrap).
      generate --seed 0 --cyclic 1024 --height 192
- cyclic-2224-fusion-tiled-twice.jpg (4448x192): the same with two styles around the circle.
      generate --seed 0 --cyclic 2224 --style 6@0,2 --style 10@1112,2 --height 192
- resample-before-after.jpg (1024x390): top, seed 6; bottom, the rectangle resampled with
  seed 13; 6 white rows between them and white lines on the rectangle's edges in both.
      generate --seed 6 --width 1024 --height 192
      generate --seed 6 --width 1024 --height 192 --resample -160,-96,320,192@13

docs/applications/blob-mask.png, the mask of mask-scene.yaml, is an input (a hand-made blob)
and is not written here. Names for --only: the file names without ".jpg".
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import infinitygan as ig
from infinitygan.cli import main as cli_main
from infinitygan.scene import Box, Mask, Scene, scene_region
from infinitygan.scene.cli import parse_resample
from infinitygan.scene.field import _member

ROOT = Path(__file__).resolve().parents[1]
MASK_SCENE = ROOT / "docs" / "applications" / "mask-scene.yaml"
QUALITY = 85
WHITE = 255

FUSION = ["--seed", "6", "--style", "6@-1536,2", "--style", "2@-512,2", "--style", "7@512,2",
          "--style", "10@1536,2", "--width", "4096", "--height", "192"]
CYCLIC = ["--seed", "0", "--cyclic", "1024", "--height", "192"]
CYCLIC_FUSION = ["--seed", "0", "--cyclic", "2224", "--style", "6@0,2", "--style", "10@1112,2", "--height", "192"]
BEFORE = ["--seed", "6", "--width", "1024", "--height", "192"]
RESAMPLE = "-160,-96,320,192@13"
GAP = 6  # white rows between the two renders of before / after


class Renderer:
    """Runs `infinitygan generate ARGS --out WORK/NAME.png` and reads the picture back (uint8 HxWx3)."""

    def __init__(self, model: str | None, work: Path):
        self.model, self.work = model, work

    def __call__(self, name: str, args: list[str]) -> np.ndarray:
        path = self.work / f"{name}.png"
        model = [] if self.model is None else ["--model", self.model]
        argv = ["generate", *args, *model, "--out", str(path), "--quiet"]
        status = cli_main(argv)
        if status != 0:
            raise SystemExit(f"infinitygan {' '.join(argv)} failed (exit status {status})")
        return np.asarray(Image.open(path).convert("RGB"))


def tiled_twice(img: np.ndarray) -> np.ndarray:
    return np.concatenate([img, img], axis=1)


def stacked(top: np.ndarray, bottom: np.ndarray, gap: int = 0) -> np.ndarray:
    sep = np.full((gap, top.shape[1], 3), WHITE, np.uint8)
    return np.concatenate([top, sep, bottom], axis=0)


def places_image(scene: Scene, region) -> np.ndarray:
    """White where a box or mask centre of the scene claims pixels of the region, black elsewhere
    (membership as the scene's style field computes it)."""
    ys = torch.arange(region.y, region.y + region.height)
    xs = torch.arange(region.x, region.x + region.width)
    out = torch.zeros(region.height, region.width, dtype=torch.bool)
    for centre in scene.centres:
        if isinstance(centre.place, (Box, Mask)):
            out |= _member(centre.place, ys, xs, None)
    return np.repeat(out.numpy()[..., None] * np.uint8(WHITE), 3, axis=2)


def mark_rectangle(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """White 1-pixel lines on the inner edges of the rectangle [x0, x1) x [y0, y1) (image pixels)
    where it borders pixels outside it (an edge on or beyond the image border gets no line)."""
    img = img.copy()
    h, w = img.shape[:2]
    ys = slice(max(y0, 0), min(y1, h))
    xs = slice(max(x0, 0), min(x1, w))
    if 0 < x0 < w:
        img[ys, x0] = WHITE
    if 0 < x1 < w:
        img[ys, x1 - 1] = WHITE
    if 0 < y0 < h:
        img[y0, xs] = WHITE
    if 0 < y1 < h:
        img[y1 - 1, xs] = WHITE
    return img


def fusion_4_styles(render: Renderer, model) -> np.ndarray:
    return render("fusion", FUSION)


def mask(render: Renderer, model) -> np.ndarray:
    scene = Scene.load(MASK_SCENE)
    image = render("mask", ["--scene", str(MASK_SCENE)])
    return stacked(image, places_image(scene, scene_region(model, scene)))


def cyclic_1024_tiled_twice(render: Renderer, model) -> np.ndarray:
    return tiled_twice(render("cyclic-1024", CYCLIC))


def cyclic_2224_fusion_tiled_twice(render: Renderer, model) -> np.ndarray:
    return tiled_twice(render("cyclic-2224-fusion", CYCLIC_FUSION))


def resample_before_after(render: Renderer, model) -> np.ndarray:
    before = render("before", BEFORE)
    after = render("after", [*BEFORE, "--resample", RESAMPLE])
    rect = parse_resample(RESAMPLE)
    region = model.region(after.shape[1], after.shape[0])
    box = (rect.x - region.x, rect.y - region.y, rect.x + rect.width - region.x, rect.y + rect.height - region.y)
    return stacked(mark_rectangle(before, *box), mark_rectangle(after, *box), GAP)


FIGURES = {
    "fusion-4-styles": fusion_4_styles,
    "mask": mask,
    "cyclic-1024-tiled-twice": cyclic_1024_tiled_twice,
    "cyclic-2224-fusion-tiled-twice": cyclic_2224_fusion_tiled_twice,
    "resample-before-after": resample_before_after,
}


def selected(only: str | None) -> list[str]:
    if not only:
        return list(FIGURES)
    names = [n.strip().removesuffix(".jpg") for n in only.split(",") if n.strip()]
    bad = [n for n in names if n not in FIGURES]
    if bad:
        raise SystemExit(f"unknown figure(s) {', '.join(bad)} (choose from {', '.join(FIGURES)})")
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: the bundled model)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "applications"))
    ap.add_argument("--only", default=None, help="comma-separated names, e.g. mask,fusion-4-styles")
    args = ap.parse_args()
    names = selected(args.only)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = ig.load_model(args.model)
    with tempfile.TemporaryDirectory() as work:
        render = Renderer(args.model, Path(work))
        for name in names:
            t = time.perf_counter()
            img = FIGURES[name](render, model)
            path = out / f"{name}.jpg"
            Image.fromarray(img).save(path, quality=QUALITY)
            print(f"wrote {path} ({img.shape[1]}x{img.shape[0]}, {time.perf_counter() - t:.1f} s)")


if __name__ == "__main__":
    main()
