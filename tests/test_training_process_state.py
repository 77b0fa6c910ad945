"""What training leaves behind in the process that called it: ``train()`` leaves glibc's malloc
as it was (only the ``train`` command, whose process ends with the run, tunes it), and importing
the training modules leaves the warning filters as they were."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

#: a glibc heap probe: 100 MiB of 64 KiB blocks (below every mmap threshold, so from the heap),
#: freed; the heap's size before and after the frees (mallinfo2.arena). Default glibc trims the
#: freed top of the heap back to the kernel; keep_freed_memory's settings keep it.
PROBE = r"""
import ctypes, json, sys
libc = ctypes.CDLL("libc.so.6")
class MI2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MI2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
ptrs = (ctypes.c_void_p * 1600)()

def heap_returned_mib():
    for i in range(1600):
        ptrs[i] = libc.malloc(64 << 10)
    peak = libc.mallinfo2().arena
    for i in reversed(range(1600)):
        libc.free(ptrs[i])
    return (peak - libc.mallinfo2().arena) / 2 ** 20
"""

SCRIPT = PROBE + r"""
from infinitygan.config import load_config
from infinitygan.training.loop import train
from infinitygan.training.options import RunOptions

cfg = load_config(sys.argv[1])
out = {"before": heap_returned_mib()}
train(cfg, "procedural", sys.argv[2] + "/a", seed=0, options=RunOptions(device="cpu", workers=0, quiet=True,
                                                                          samples=False))
out["after_train"] = heap_returned_mib()
train(cfg, "procedural", sys.argv[2] + "/b", seed=0, options=RunOptions(device="cpu", workers=0, quiet=True,
                                                                          samples=False, keep_freed_memory=True))
out["after_opt_in"] = heap_returned_mib()
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux)")
def test_train_leaves_malloc_as_it_was_unless_asked(tmp_path):
    from test_training import MICRO

    cfg = json.loads(json.dumps(MICRO))
    cfg["training"].update(iterations=2, checkpoint_every=2, sample_every=2, log_every=2)
    (tmp_path / "micro.yaml").write_text(yaml.safe_dump(cfg))
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018 - glibc >= 2.33
    except (OSError, AttributeError):
        pytest.skip("not glibc >= 2.33 (no mallinfo2)")
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "micro.yaml"), str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=REPO,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["before"] > 50, got  # the probe sees glibc's default trimming
    assert got["after_train"] > 50, got  # ... still there after train()
    assert got["after_opt_in"] < 10, got  # and sees the tuning when a caller asks for it


def test_the_train_command_tunes_malloc_for_its_own_process(tmp_path, monkeypatch):
    """The CLI's process ends with the run: it opts in."""
    from infinitygan.cli import main
    from infinitygan.training import loop

    seen = []

    def fake_train(cfg, data, run, seed=None, resume=False, options=None, init=None):
        seen.append(options)
        return {"rank": 1}

    monkeypatch.setattr(loop, "train", fake_train)
    assert main(["train", "--preset", "tiny", "--data", "procedural", "--out", str(tmp_path / "r"),
                 "--device", "cpu", "--quiet"]) in (0, None)
    assert len(seen) == 1 and seen[0].keep_freed_memory


def test_importing_the_training_modules_leaves_warning_filters_alone():
    code = ("import warnings, torch, torch.nn.parallel, infinitygan.api, infinitygan.parallel.env\n"
            "before = list(warnings.filters)\n"
            "import infinitygan.training.nets, infinitygan.training.phases, infinitygan.training.loop\n"
            "print(warnings.filters == before, len(warnings.filters) - len(before))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.stdout.split() == ["True", "0"], (r.stdout, r.stderr[-2000:])


def test_the_grad_stride_hint_is_quiet_only_inside_the_block():
    from infinitygan.training.nets import GRAD_STRIDE_HINT, quiet_grad_stride_hint

    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_grad_stride_hint():
            warnings.warn(f"{GRAD_STRIDE_HINT}: grad.sizes() = [1, 8]", UserWarning)
            warnings.warn("another warning", UserWarning)
        warnings.warn(f"{GRAD_STRIDE_HINT}: outside", UserWarning)
    assert [str(w.message) for w in caught] == ["another warning", f"{GRAD_STRIDE_HINT}: outside"]
    assert warnings.filters == before
