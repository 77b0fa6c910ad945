"""Replay the hostile inputs of issue 31 (section 4) as a new user would type them, and count them.

    .venv/bin/python tools/hostile_inputs.py [-k SUBSTRING] [--keep DIR]

Each case runs ``python -m infinitygan ARGS`` in a fresh folder, in its own process under an
address-space limit (8 GiB, also given to the command as INFINITYGAN_MEMORY_MB, so a case that
would allocate until the machine dies fails here instead) and a time limit. A case is handled
when the command ends with exit status 2 and exactly one line on stderr ("infinitygan: error:
...", naming what the case expects) and its folder holds afterwards exactly what it held before
(nothing deleted, replaced or left behind), or, for the cases that have a correct result, when
that result is there. A few cases need the machine to misbehave (a full disk, memory running out
while preprocessing, a file of mode 000 that root can read anyway): a few lines of Python before
the command (``prelude``) make it so. Prints one line per case and ``handled N of M``; exit status
0 when every case was handled.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 8 * 2 ** 30
TIMEOUT_S = 240

WIDE = {"zg_dim": 8192, "zl_dim": 8192, "style_dim": 8192, "gs_channels": 8192, "ts_channels": [8192] * 8}


def bomb(key: str, indent: int = 0) -> str:
    """``key:`` a list whose aliases expand 9 levels of 9 (387 million values) from about 500 bytes."""
    pad = " " * indent
    rows = [f"{pad}  - &a0 [x, x, x, x, x, x, x, x, x]"]
    rows += [f"{pad}  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return f"{pad}{key}:\n" + "\n".join(rows) + "\n"


NO_ACCESS = """
import builtins, safetensors, safetensors.torch
def _refuse(f):  # what mode 000 does to a user (root reads it anyway): every open of the file fails
    def g(p, *a, **k):
        if str(p).endswith('ckpt-00000001.safetensors'):
            raise PermissionError(13, 'Permission denied', str(p))
        return f(p, *a, **k)
    return g
builtins.open = _refuse(builtins.open)
safetensors.safe_open = _refuse(safetensors.safe_open)
safetensors.torch.load_file = _refuse(safetensors.torch.load_file)
"""
FULL_DISK = """
import lmdb
_real = lmdb.open
class _Txn:
    def __init__(self, t): self.t = t
    def put(self, *a, **k): raise lmdb.DiskError('mdb_put: No space left on device')
    def __getattr__(self, n): return getattr(self.t, n)
class _Env:
    def __init__(self, e): self.e = e
    def begin(self, *a, **k): return _Txn(self.e.begin(*a, **k))
    def __getattr__(self, n): return getattr(self.e, n)
lmdb.open = lambda *a, **k: _Env(_real(*a, **k))
"""
OUT_OF_MEMORY = """
import infinitygan.data.lmdb_pack as lp
def _oom(*a, **k): raise MemoryError
lp._load_uint8 = _oom
"""


@dataclass
class Case:
    name: str
    args: list[str]
    needle: str = ""  # what the one line must say
    setup: Callable[[Path, Path], None] | None = None  # (case folder, fixtures)
    prelude: str = ""
    result: Callable[[Path], bool] | None = None  # a correct result (exit 0) instead of a refusal
    absent: list[str] = field(default_factory=list)  # words the line must not hold


# ------------------------------------------------------------------------------- fixtures
def _run(args: list[str], cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "infinitygan", *args], cwd=cwd, check=True, capture_output=True)


def make_fixtures(d: Path) -> None:
    import numpy as np
    from PIL import Image

    _run(["init", "--out", str(d / "tiny.safetensors")], d)
    (d / "imgs").mkdir()
    for i in range(2):
        Image.fromarray(np.random.RandomState(i).randint(0, 255, (40, 48, 3), np.uint8)).save(d / f"imgs/{i}.png")
    _run(["prepare", "imgs", "--out", "pack.lmdb", "--full-size", "197", "--quiet"], d)
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(d / "photo.png")
    _run(["invert", "photo.png", "--model", "tiny.safetensors", "--steps", "2", "--w-samples", "20", "--quiet",
          "--out", "photo.safetensors"], d)


def _copy(*names: str) -> Callable[[Path, Path], None]:
    def setup(case: Path, fx: Path) -> None:
        for n in names:
            (shutil.copytree if (fx / n).is_dir() else shutil.copy)(fx / n, case / n)
    return setup


def _write(name: str, text: str, *also: str) -> Callable[[Path, Path], None]:
    def setup(case: Path, fx: Path) -> None:
        _copy(*also)(case, fx)
        (case / name).parent.mkdir(parents=True, exist_ok=True)
        (case / name).write_text(text)
    return setup


def _wide_model(case: Path, fx: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(fx / "tiny.safetensors"), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    cfg["generator"].update(WIDE)
    meta["config"] = json.dumps(cfg)
    save_file(state, str(case / "wide.safetensors"), metadata=meta)


def _wide_config(case: Path, fx: Path) -> None:  # 117 bytes
    (case / "wide.yaml").write_text("generator: {zg_dim: 8192, zl_dim: 8192, style_dim: 8192, gs_channels: 8192, "
                                    "ts_channels: [8192,8192,8192,8192,8192,8192,8192,8192]}\n")


def _mask_bomb(case: Path, fx: Path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    (case / "m.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
                                 + chunk(b"IEND", b""))
    (case / "s.yaml").write_text("centres:\n  - {seed: 1, mask: {file: m.png, x: 0, y: 0}}\n")


def _lmdb(meta: bytes | None = None, records: dict | None = None) -> Callable[[Path, Path], None]:
    def setup(case: Path, fx: Path) -> None:
        import lmdb

        _copy("pack.lmdb")(case, fx)
        env = lmdb.open(str(case / "pack.lmdb"), subdir=True, map_size=64 << 20)
        with env.begin(write=True) as txn:
            if meta is not None:
                txn.put(b"__meta__", meta)
            for k, v in (records or {}).items():
                txn.put(k, v)
        env.close()
    return setup


def _latents_period(case: Path, fx: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    _copy("tiny.safetensors")(case, fx)
    with safe_open(str(fx / "photo.safetensors"), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["period"] = '"-5"'
    save_file(tensors, str(case / "bad.safetensors"), metadata=meta)


def _nan_official(case: Path, fx: Path) -> None:
    """The tiny model as the authors' code saves its g_ema, one weight NaN."""
    import re

    import torch
    from safetensors.torch import load_file

    theirs = {}
    for k, v in load_file(str(fx / "tiny.safetensors")).items():
        k = re.sub(r"^mapping\.net\.", "texture_synthesizer.mapping.", k)
        k = re.sub(r"^structure\.layers\.(\d+)\.", r"structure_synthesizer.implicit_model.conv_stack.\1.conv.", k)
        k = re.sub(r"^texture\.(convs|to_rgbs)\.", r"texture_synthesizer.\1.", k)
        theirs[k] = v[None] if k.endswith("conv.weight") and v.dim() == 4 else v
    theirs["texture_synthesizer.mapping.1.weight"][0, 0] = float("nan")
    torch.save({"g_ema": theirs}, case / "nan.pt")


def _pickle4(case: Path, fx: Path) -> None:
    import argparse
    import pickle

    with open(case / "p.pkl", "wb") as f:
        pickle.dump({"g_ema": argparse.Namespace(a=1)}, f, protocol=4)


def _cut80(case: Path, fx: Path) -> None:
    data = bytearray((fx / "tiny.safetensors").read_bytes()[:300])
    data[0], data[1] = 0x80, 0x02  # the header length's low byte reads like a pickle's start
    (case / "cut.safetensors").write_bytes(bytes(data))


def _locked(case: Path, fx: Path) -> None:
    (case / "run" / "checkpoints").mkdir(parents=True)
    locked = case / "run" / "checkpoints" / "ckpt-00000001.safetensors"
    shutil.copy(fx / "tiny.safetensors", locked)
    locked.chmod(0)


def _own_pack_replaced(case: Path) -> bool:
    import lmdb

    env = lmdb.open(str(case / "pack.lmdb"), subdir=True, readonly=True, lock=False)
    with env.begin() as txn:
        meta = json.loads(txn.get(b"__meta__"))
    env.close()
    return meta["full_size"] == 64 and sorted(p.name for p in (case / "imgs").iterdir()) == ["0.png", "1.png"]


def cases() -> list[Case]:
    tiny = ["--model", "tiny.safetensors"]
    return [
        # data loss
        Case("prepare imgs --out imgs --overwrite", ["prepare", "imgs", "--out", "imgs", "--overwrite", "--quiet"],
             "image folder", _copy("imgs")),
        Case("prepare --overwrite onto a user's folder", ["prepare", "imgs", "--out", "mine", "--overwrite", "--quiet"],
             "written by `prepare`", _write("mine/notes.txt", "keep me", "imgs")),
        Case("prepare --out .", ["prepare", "imgs", "--out", ".", "--quiet"], "image folder", _copy("imgs")),
        Case("prepare --out . --overwrite", ["prepare", "imgs", "--out", ".", "--overwrite", "--quiet"],
             "image folder", _copy("imgs")),
        Case("prepare --overwrite onto its own LMDB (replaced)",
             ["prepare", "imgs", "--out", "pack.lmdb", "--overwrite", "--full-size", "64", "--quiet"],
             setup=_copy("imgs", "pack.lmdb"), result=_own_pack_replaced),
        # work sized by the input
        Case("info: 1.7 MB model file declaring 8192-wide layers", ["info", "wide.safetensors"], "do not match",
             _wide_model),
        Case("generate: 1.7 MB model file declaring 8192-wide layers",
             ["generate", "--model", "wide.safetensors", "--out", "o.png"], "do not match", _wide_model),
        Case("init --preset 117-byte config of 8192-wide layers", ["init", "--preset", "wide.yaml", "--out",
                                                                   "m.safetensors"], "memory", _wide_config),
        Case("train --config 117-byte config of 8192-wide layers",
             ["train", "--config", "wide.yaml", "--out", "run", "--quiet"], "memory", _wide_config),
        Case("train --set full_size=8192", ["train", "--set", "full_size=8192", "--out", "run", "--quiet"], "memory"),
        Case("generate --height 16 --width 2147483647 --force",
             ["generate", *tiny, "--height", "16", "--width", "2147483647", "--force", "--out", "o.png"], "memory",
             _copy("tiny.safetensors")),
        Case("generate --tile 16384 --batch 1024",
             ["generate", *tiny, "--width", "65536", "--height", "16384", "--tile", "16384", "--batch", "1024",
              "--out", "o.tif"], "memory", _copy("tiny.safetensors")),
        # YAML
        Case("init --preset alias bomb", ["init", "--preset", "c.yaml", "--out", "m.safetensors"],
             "anchors and aliases", _write("c.yaml", "generator:\n" + bomb("zg_dim", 2))),
        Case("train --config alias bomb", ["train", "--config", "c.yaml", "--out", "run", "--quiet"],
             "anchors and aliases", _write("c.yaml", "generator:\n" + bomb("zg_dim", 2))),
        Case("generate --scene alias bomb", ["generate", "--scene", "s.yaml", "--out", "o.png"], "anchors and aliases",
             _write("s.yaml", bomb("seed"))),
        Case("train --resume, run config.yaml an alias bomb", ["train", "--out", "run", "--resume", "--quiet"],
             "anchors and aliases", _write("run/config.yaml", bomb("name"))),
        Case("a value of 5000 entries is shown cut short", ["init", "--preset", "c.yaml", "--out", "m.safetensors"],
             "...", _write("c.yaml", "generator: {zg_dim: [" + ", ".join(["123456"] * 5000) + "]}\n")),
        Case("scene mask of 60000 x 60000 pixels", ["generate", "--scene", "s.yaml", "--out", "o.png"], "megapixels",
             _mask_bomb),
        # malformed structure
        Case("init: generator: [1, 2]", ["init", "--preset", "c.yaml", "--out", "m.safetensors"], "mapping",
             _write("c.yaml", "generator: [1, 2]\n")),
        Case("train: generator: [1, 2]", ["train", "--config", "c.yaml", "--out", "run", "--quiet"], "mapping",
             _write("c.yaml", "generator: [1, 2]\n")),
        Case("train --resume: generator: [1, 2] in config.yaml", ["train", "--out", "run", "--resume", "--quiet"],
             "mapping", _write("run/config.yaml", "generator: [1, 2]\n")),
        Case("export folder whose manifest.json is a list",
             ["generate", "--runtime", "onnx", "--model", "exp", "--out", "o.png"], "manifest.json",
             _write("exp/manifest.json", "[1, 2]")),
        Case("a text file as Inception weights (.pth)",
             ["eval", "--metric", "fid", *tiny, "--num", "2", "--inception-weights", "w.pth"], "Inception weights",
             _write("w.pth", "not weights\n", "tiny.safetensors")),
        Case("a text file as Inception weights (.safetensors)",
             ["eval", "--metric", "fid", *tiny, "--num", "2", "--inception-weights", "w.safetensors"],
             "Inception weights", _write("w.safetensors", "not weights\n", "tiny.safetensors")),
        Case("LMDB whose metadata is not JSON", ["train", "--data", "pack.lmdb", "--out", "run", "--quiet"],
             "not JSON", _lmdb(b"{not json")),
        Case("LMDB whose metadata is a list", ["train", "--data", "pack.lmdb", "--out", "run", "--quiet"],
             "not a mapping", _lmdb(b"[1, 2]")),
        Case("LMDB claiming 10^12 images", ["train", "--data", "pack.lmdb", "--out", "run", "--quiet"], "records",
             _lmdb(b'{"count": 1000000000000, "full_size": 197, "pre_resize": 128, "format": "png"}')),
        Case("prepare on a full disk (lmdb.Error)", ["prepare", "imgs", "--out", "new.lmdb", "--quiet"], "disk full",
             _copy("imgs"), prelude=FULL_DISK),
        # exit 0 with a wrong result
        Case("convert-official of NaN weights", ["convert-official", "nan.pt", "--out", "o.safetensors"], "NaN",
             _nan_official),
        Case('latents file whose period is "-5"', ["generate", *tiny, "--latents", "bad.safetensors", "--out",
                                                   "o.png"], "period", _latents_period),
        # misleading messages
        Case("truncated model, header length starting 0x80", ["info", "cut.safetensors"], "truncated or corrupt",
             _cut80, absent=["pickle"]),
        Case("info /dev/null", ["info", "/dev/null"], "not a regular file"),
        Case("info /dev/zero", ["info", "/dev/zero"], "not a regular file"),
        Case("generate --model FIFO", ["generate", "--model", "fifo", "--out", "o.png"], "not a regular file",
             lambda case, fx: os.mkfifo(case / "fifo")),
        Case("generate --out /proc/a.png", ["generate", *tiny, "--out", "/proc/a.png"], "not writable",
             _copy("tiny.safetensors"), absent=["0.0 MB"]),
        Case("generate --out f/a.png, f a file", ["generate", *tiny, "--out", "f/a.png"], "is a file",
             _write("f", "a file", "tiny.safetensors")),
        Case("prepare --full-size 8192 running out of memory",
             ["prepare", "imgs", "--out", "new.lmdb", "--full-size", "8192", "--quiet"], "memory", _copy("imgs"),
             prelude=OUT_OF_MEMORY, absent=["decoded"]),
        Case("LMDB holding a junk record", ["train", "--data", "pack.lmdb", "--out", "run", "--quiet"],
             "not a readable", _lmdb(records={b"00000000": b"junk"}), absent=["BytesIO"]),
        Case("info on a run whose checkpoint has mode 000", ["info", "run"], "permission denied", _locked,
             prelude=NO_ACCESS, absent=["corrupt"]),
        Case("outpaint --cyclic 15", ["outpaint", "--latents", "photo.safetensors", *tiny, "--cyclic", "15",
                                      "--height", "32", "--out", "o.png"], "multiple of 16",
             _copy("tiny.safetensors", "photo.safetensors"), absent=["--cyclic 15"]),
        # more than one line
        Case("generate --nproc 2 --tile 0", ["generate", *tiny, "--nproc", "2", "--tile", "0", "--out", "o.png"],
             "--tile", _copy("tiny.safetensors")),
        Case("convert-official of a protocol-4 pickle", ["convert-official", "p.pkl", "--out", "o.safetensors"],
             "refused", _pickle4),
    ]


# ---------------------------------------------------------------------------------- running
def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a digest of its content (what a case must leave as it was)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink() or not (p.is_file() or p.is_dir()):
            out[rel] = "special"
        elif p.is_dir():
            out[rel] = "dir"
        else:
            try:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            except PermissionError:
                out[rel] = "unreadable"
    return out


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


def run_case(case: Case, folder: Path, fixtures: Path) -> tuple[bool, str]:
    folder.mkdir()
    if case.setup is not None:
        case.setup(folder, fixtures)
    before = snapshot(folder)
    code = case.prelude + "\nimport sys\nfrom infinitygan.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    env = dict(os.environ, INFINITYGAN_MEMORY_MB=str(LIMIT_BYTES // 2 ** 20))
    env.pop("INFINITYGAN_INCEPTION_WEIGHTS", None)
    try:
        p = subprocess.run([sys.executable, "-c", code, *case.args], cwd=folder, env=env, capture_output=True,
                           text=True, timeout=TIMEOUT_S, preexec_fn=_limits, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"still running after {TIMEOUT_S} s"
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and "\r" not in ln]  # progress bars redraw with \r
    if case.result is not None:
        if p.returncode != 0:
            return False, f"exit {p.returncode}: {lines[-1] if lines else ''}"
        return (True, "correct result") if case.result(folder) else (False, "exit 0 but a wrong result")
    if p.returncode != 2:
        return False, f"exit {p.returncode}: {(lines or [''])[-1][:160]}"
    if len(lines) != 1 or not lines[0].startswith("infinitygan: error:"):
        return False, f"{len(lines)} lines on stderr: {' | '.join(x[:80] for x in lines[:3])}"
    line = lines[0]
    if case.needle not in line or any(w in line for w in case.absent):
        return False, f"misleading: {line[:200]}"
    after = snapshot(folder)
    if after != before:
        changed = sorted(set(after) ^ set(before) | {k for k in after if k in before and after[k] != before[k]})
        return False, f"left behind or changed: {', '.join(changed[:4])}"
    return True, line[len("infinitygan: error: "):][:150]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="run only the cases whose name contains this")
    ap.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temporary one)")
    a = ap.parse_args(argv)
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="hostile-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        fixtures = root / "fixtures"
        if not fixtures.exists():
            fixtures.mkdir()
            make_fixtures(fixtures)
        chosen = [c for c in cases() if a.k in c.name]
        handled = 0
        for i, case in enumerate(chosen):
            folder = root / f"case-{i:02d}"
            shutil.rmtree(folder, ignore_errors=True)
            ok, why = run_case(case, folder, fixtures)
            handled += ok
            print(f"{'handled' if ok else 'FAILED '}  {case.name}: {why}", flush=True)
        print(f"handled {handled} of {len(chosen)}")
        return 0 if handled == len(chosen) else 1
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
