"""Figures and measured checks of docs/applications.md (inversion section).

    python tools/inversion_figures.py [--steps 1000] [--work /tmp/inv] [--out docs/applications]

1. Draws two photo-like landscapes with numpy (sky with clouds, a mountain ridge, textured
   fields; NOT made by the model), saves them as JPEG and inverts each with the bundled model
   through the CLI (`infinitygan invert`), reporting PSNR (and LPIPS when its weights exist).
2. Outpaints photo A to a wide panorama, three continuations of it (seeds 1, 2, 3), and a
   cyclic panorama, and inbetweens A and B.
3. Writes docs/applications/inversion-*.jpg (the photo's place marked with a red frame) and prints a JSON
   summary of the figures' numbers. Latents are cached in --work, so reruns are cheap.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale: int) -> np.ndarray:
    """Value noise: a coarse random grid upsampled bicubically to (h, w), about [-1, 1]."""
    g = rng.standard_normal((h // scale + 3, w // scale + 3)).astype(np.float32)
    img = Image.fromarray(g).resize(((w // scale + 3) * scale, (h // scale + 3) * scale), Image.BICUBIC)
    return np.asarray(img)[scale: scale + h, scale: scale + w] / 1.5


def draw_landscape(width: int, height: int, seed: int, ridge_color=(92, 104, 128),
                   field_color=(86, 122, 52)) -> np.ndarray:
    """A photo-like landscape (H, W, 3) uint8, horizon near the middle."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None]
    horizon = 0.5 * height
    sky_top, sky_low = np.array([70, 120, 200], np.float32), np.array([200, 215, 230], np.float32)
    t = np.clip(y / 0.5, 0, 1)[..., None]
    img = (1 - t) * sky_top + t * sky_low + np.zeros((1, width, 1), np.float32)
    clouds = np.clip(sum(_smooth_noise(rng, height, width, s) / k for s, k in ((24, 1), (8, 2), (3, 4))) - 0.2, 0, 1)
    img = img * (1 - clouds[..., None] * 0.8) + 245 * clouds[..., None] * 0.8
    ridge = horizon - 0.18 * height * (0.6 + 0.4 * np.sin(x / 37.0 + seed) + 0.3 * np.sin(x / 11.0 + 2 * seed)) \
        - 4 * _smooth_noise(rng, 1, width, 6)
    rows = np.arange(height, dtype=np.float32)[:, None]
    mountain = (rows > ridge)[..., None]
    shade = 0.85 + 0.15 * _smooth_noise(rng, height, width, 5)[..., None]
    img = np.where(mountain, np.array(ridge_color, np.float32) * shade, img)
    fields_top = horizon + 2 * _smooth_noise(rng, 1, width, 20)
    field = (rows > fields_top)[..., None]
    tex = 0.75 + 0.25 * (_smooth_noise(rng, height, width, 9) + 0.4 * _smooth_noise(rng, height, width, 2))[..., None]
    depth = np.clip((rows - horizon) / (0.5 * height), 0, 1)[..., None]
    ground = np.array(field_color, np.float32) * tex * (0.8 + 0.35 * depth)
    img = np.where(field, ground, img)
    img += rng.normal(0, 3, img.shape)  # sensor noise
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    return np.asarray(out)


def cli(*args) -> None:
    subprocess.run([sys.executable, "-m", "infinitygan", *map(str, args)], check=True)


def framed(path: Path, box: tuple[int, int, int, int] | list, out: Path, scale: float = 1.0) -> None:
    """Save ``path`` as JPEG with red frames around box(es) (x, y, w, h in the image's pixels)."""
    img = Image.open(path).convert("RGB")
    draw = ImageDraw.Draw(img)
    for x, y, w, h in (box if isinstance(box, list) else [box]):
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=(230, 30, 30), width=2)
    if scale != 1.0:
        img = img.resize((int(img.width * scale), int(img.height * scale)), Image.LANCZOS)
    img.save(out, quality=90)


def stack(paths: list[Path], out: Path, boxes=None, gap: int = 4) -> None:
    ims = [Image.open(p).convert("RGB") for p in paths]
    W, H = max(i.width for i in ims), sum(i.height for i in ims) + gap * (len(ims) - 1)
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    y = 0
    draw = ImageDraw.Draw(canvas)
    for i, im in enumerate(ims):
        canvas.paste(im, (0, y))
        if boxes is not None:
            bx, by, bw, bh = boxes[i]
            draw.rectangle([bx, y + by, bx + bw - 1, y + by + bh - 1], outline=(230, 30, 30), width=2)
        y += im.height + gap
    canvas.save(out, quality=90)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--work", default="/tmp/inversion-figures")
    ap.add_argument("--out", default="docs/applications")
    ap.add_argument("--photo-width", type=int, default=256)
    ap.add_argument("--photo-height", type=int, default=128)
    ap.add_argument("--pano-width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--distance", type=int, default=768)
    a = ap.parse_args()
    work, out = Path(a.work), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    pw, ph = a.photo_width, a.photo_height
    summary = {"steps": a.steps}
    photos = {}
    for name, seed, ridge, field in (("a", 1, (92, 104, 128), (86, 122, 52)), ("b", 5, (120, 100, 90), (140, 130, 60))):
        p = work / f"photo_{name}.jpg"
        if not p.exists():
            Image.fromarray(draw_landscape(pw, ph, seed, ridge, field)).save(p, quality=92)
        photos[name] = p
    lat_a = work / f"photo_a_{a.steps}.safetensors"
    if not lat_a.exists():
        cli("invert", photos["a"], "--steps", a.steps, "--preview", work / "recon_a.png", "--out", lat_a)
    from infinitygan.inversion import load_latents

    la = load_latents(lat_a)
    summary["photo_a"] = {"size": [pw, ph], **la.metrics}
    stack([photos["a"], work / "recon_a.png"], out / "inversion-reconstruction.jpg")
    # wide panorama: the photo's place is the middle of the output
    H, W = a.height, a.pano_width
    pano = work / "pano.png"
    cli("outpaint", "--latents", lat_a, "--width", W, "--height", H, "--seed", 1, "--out", pano, "--quiet")
    box = ((W - pw) // 2, (H - ph) // 2, pw, ph)
    framed(pano, box, out / "inversion-outpaint.jpg")
    # three continuations
    conts = []
    for s in (1, 2, 3):
        p = work / f"cont_{s}.png"
        cli("outpaint", "--latents", lat_a, "--width", 3 * pw, "--height", H, "--seed", s, "--out", p, "--quiet")
        conts.append(p)
    stack(conts, out / "inversion-continuations.jpg", boxes=[(pw, (H - ph) // 2, pw, ph)] * 3)
    # inbetweening: photo B placed --distance pixels right of photo A's inverted place
    lat_b = work / f"photo_b_{a.steps}_d{a.distance}.safetensors"
    between = work / "between.png"
    dist = a.distance
    if not lat_b.exists():
        cli("invert", photos["b"], "--steps", a.steps, "--x", la.region.x + pw + dist, "--y", la.region.y,
            "--out", lat_b)
    cli("inbetween", lat_a, lat_b, "--seed", 1, "--height", H, "--out", between, "--quiet")
    lb = load_latents(lat_b)
    summary["photo_b"] = {"size": [pw, ph], **lb.metrics}
    framed(between, [(0, (H - ph) // 2, pw, ph), (pw + dist, (H - ph) // 2, pw, ph)], out / "inversion-inbetween.jpg")
    # cyclic panorama: one period of the model's coordinates (2224 px for tiny), shown twice around
    period = 139 * 16
    cyc = work / "cyclic.png"
    off = (period - pw) // 2  # the photo in the middle of each period
    cli("outpaint", "--latents", lat_a, "--cyclic", period, "--width", 2 * period, "--x", la.region.x - off,
        "--height", H, "--seed", 4, "--out", cyc, "--quiet")
    framed(cyc, [(off, (H - ph) // 2, pw, ph), (off + period, (H - ph) // 2, pw, ph)],
           out / "inversion-cyclic.jpg", 0.5)
    summary["figures"] = ["inversion-reconstruction.jpg", "inversion-outpaint.jpg", "inversion-continuations.jpg",
                          "inversion-inbetween.jpg", "inversion-cyclic.jpg"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
