"""Beyond one machine, with torch's real launcher (torchrun's elastic agent, gloo on loopback):

- a worker SIGKILLed mid-iteration, or while rank 0 writes a checkpoint, under
  ``torchrun --max-restarts 1``: the surviving rank says so in one line, torchrun restarts the
  group, the run resumes by itself from the newest complete checkpoint and its final checkpoint
  equals an uninterrupted run's, tensor for tensor;
- two torchrun launchers acting as two nodes (``--nnodes 2 --nproc-per-node 1`` with a c10d
  rendezvous on 127.0.0.1): ``train`` equals one node's two processes, ``generate`` the bytes of
  one process, and only global rank 0 writes into the run folder.

Every launch is bounded in time; nothing outside this machine is contacted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file

from infinitygan.parallel.env import free_port
from test_training import MICRO as _MICRO

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")

#: the micro config of test_training (an iteration takes tens of milliseconds): R1 every 2, path
#: length every 3 iterations, so the resumed stretch holds every phase
MICRO = {**_MICRO, "training": {**_MICRO["training"], "sample_every": 100, "iterations": 9}}
FINAL = "ckpt-00000009.safetensors"
LAUNCH_TIMEOUT = 240  # seconds, per torchrun (a few seconds each on an idle machine)


def train_args(cfg: Path, out: str) -> list[str]:
    return ["-m", "infinitygan", "train", "--config", str(cfg), "--out", out, "--workers", "0", "--device", "cpu",
            "--quiet", "--deterministic", "--seed", "3"]


def torchrun(launcher: list[str], args: list[str], cwd: Path, inject: str | None = None,
             wait: bool = True):
    """``python -m torch.distributed.run LAUNCHER ARGS`` in ``cwd``; ``inject``: the source of a
    sitecustomize module every process of the launch imports (our fault injection)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")  # equal thread counts: equal bits
    paths = [str(REPO), env.get("PYTHONPATH")]
    if inject is not None:
        d = cwd / f"inject-{abs(hash(inject)) % 10**8}"
        d.mkdir(exist_ok=True)
        (d / "sitecustomize.py").write_text(inject)
        paths.insert(0, str(d))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher, *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)


def ours(stderr: str) -> list[str]:
    """Our own lines of a launch's stderr (torchrun's agent logs its own besides)."""
    return [ln for ln in stderr.splitlines() if ln.startswith("infinitygan:")]


def assert_same_checkpoints(a: Path, b: Path) -> None:
    A, B = load_file(str(a)), load_file(str(b))
    assert A.keys() == B.keys()
    bad = [k for k in A if not torch.equal(A[k], B[k])]
    assert not bad, bad[:5]


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "micro.yaml"
    path.write_text(yaml.safe_dump(MICRO))
    return path


@pytest.fixture(scope="module")
def one_node_run(micro, tmp_path_factory) -> Path:
    """The uninterrupted run: one node, two processes (``torchrun --standalone``)."""
    root = tmp_path_factory.mktemp("one-node")
    r = torchrun(["--standalone", "--nproc-per-node", "2"], train_args(micro, "run"), root)
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "run"


# ------------------------------------------------------------------------ a lost worker
#: rank 1 dies (SIGKILL) in the middle of iteration 6 (t = 5: after the checkpoint of iteration 4),
#: in the first start of the group only
KILL_MID_ITERATION = """
import os, signal
if os.environ.get("RANK") == "1" and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
    import infinitygan.training.phases as phases

    _run = phases.TrainingLoss.run

    def run(self, phase, t, *a, **k):
        if t == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return _run(self, phase, t, *a, **k)

    phases.TrainingLoss.run = run
"""

#: rank 0 dies (SIGKILL) while it writes the checkpoint of iteration 6: half the file is on disk
#: under its temporary name, never renamed
KILL_WRITING_CHECKPOINT = """
import os, signal
if os.environ.get("RANK") == "0" and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
    import safetensors.torch as st

    _save = st.save_file

    def save_file(tensors, filename, *a, **k):
        _save(tensors, filename, *a, **k)
        if "ckpt-00000006" in str(filename):
            with open(filename, "r+b") as f:
                f.truncate(os.path.getsize(filename) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

    st.save_file = save_file
"""


@pytest.mark.parametrize("fault", ["mid-iteration", pytest.param("writing-checkpoint", marks=pytest.mark.slow)])
def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_uninterrupted(micro, one_node_run, tmp_path, fault):
    inject, dead, survivor = ((KILL_MID_ITERATION, 1, 0) if fault == "mid-iteration"
                              else (KILL_WRITING_CHECKPOINT, 0, 1))
    r = torchrun(["--standalone", "--nproc-per-node", "2", "--max-restarts", "1", "--monitor-interval", "0.2"],
                 train_args(micro, "run"), tmp_path, inject=inject)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = ours(r.stderr)
    # the survivor: one line (no gloo traceback); the restarted rank 0: one line; then the summary
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lost = [ln for ln in lines if "another process of the group ended" in ln]
    assert len(lost) == 1 and lost[0].startswith(f"infinitygan: error: rank {survivor}:"), lines
    assert lines[1:] == ["infinitygan: torchrun restart 1: resuming run from ckpt-00000004.safetensors"], lines
    assert r.stderr.splitlines()[-1].startswith("iteration 9, 36 images seen"), r.stderr[-3000:]
    assert f"local_rank: {dead}" in r.stderr  # torchrun saw that worker die
    run = tmp_path / "run"
    assert not list((run / "checkpoints").glob(".*.part")), "the half-written checkpoint was left behind"
    assert_same_checkpoints(one_node_run / "checkpoints" / FINAL, run / "checkpoints" / FINAL)


def test_a_restart_resumes_only_its_own_job(micro, one_node_run, tmp_path, monkeypatch):
    """torchrun restarts a group on any failure: an --out that already held another job's
    checkpoints (refused on the first start) is refused again on the restart, never taken over."""
    import shutil

    from infinitygan.config import load_config
    from infinitygan.errors import UserError
    from infinitygan.io.checkpoint import read_metadata
    from infinitygan.training.loop import ELASTIC_RUN, elastic_restart_resumes, train
    from infinitygan.training.options import RunOptions

    job = read_metadata(one_node_run / "checkpoints" / FINAL)[ELASTIC_RUN]  # torchrun --standalone: a uuid
    assert job and job != "none"
    run = tmp_path / "run"
    shutil.copytree(one_node_run, run)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", job)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    assert not elastic_restart_resumes(run)  # the first start never resumes by itself
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert elastic_restart_resumes(run)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "another-job")
    assert not elastic_restart_resumes(run)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    cfg = load_config(micro).with_training(iterations=11)
    with pytest.raises(UserError, match="already holds checkpoints"):
        train(cfg, "procedural", run, seed=3, options=RunOptions(device="cpu", workers=0, quiet=True))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


# ------------------------------------------------------------------------------- two nodes
def two_nodes(args: list[str], cwds: tuple[Path, Path], inject: str | None = None) -> list[subprocess.CompletedProcess]:
    """Two torchrun launchers as two nodes of one job (one process each), joined by a c10d
    rendezvous on 127.0.0.1, each in its own working directory; both results, in launch order."""
    launcher = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "two-nodes"]
    procs = [torchrun(launcher, args, cwd, inject=inject, wait=False) for cwd in cwds]
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=LAUNCH_TIMEOUT)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return done


#: every process but global rank 0 records each write it makes under $AUDIT_DIR (open for
#: writing, mkdir, rename, remove) in $AUDIT_DIR/../writes-RANK.txt, through Python's audit hooks
AUDIT_WRITES = """
import os, sys
rank, root = os.environ.get("RANK"), os.environ.get("AUDIT_DIR")
if root and rank not in (None, "0"):
    root = os.path.abspath(root)
    report = open(os.path.join(os.path.dirname(root), f"writes-{rank}.txt"), "w", buffering=1)
    report.write("audited\\n")
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def under_root(path):
        if isinstance(path, int):
            return False
        path = os.path.abspath(os.fsdecode(path))
        return path == root or path.startswith(root + os.sep)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (int(flags or 0) & WRITE)
            if writes and under_root(path):
                report.write(f"{event} {path}\\n")
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.truncate", "os.chmod"):
            if under_root(args[0]):
                report.write(f"{event} {args[0]}\\n")
        elif event == "os.rename":
            if under_root(args[0]) or under_root(args[1]):
                report.write(f"{event} {args[0]} {args[1]}\\n")

    sys.addaudithook(hook)
"""


def test_two_nodes_train_like_one_node_and_only_rank_0_writes(micro, one_node_run, tmp_path, monkeypatch):
    """`train` on two launchers x one process equals one node's two processes, tensor for tensor;
    the rank of the other node writes nothing into the run folder (checkpoints, config, logs and
    samples are rank 0's); the shared-folder token is gone afterwards."""
    monkeypatch.setenv("AUDIT_DIR", str(tmp_path / "run"))
    results = two_nodes(train_args(micro, str(tmp_path / "run")) + ["--sample-every", "3"], (tmp_path, tmp_path),
                        inject=AUDIT_WRITES)
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    assert sum("iteration 9, 36 images seen" in r.stderr for r in results) == 1  # rank 0's summary, once
    run = tmp_path / "run"
    assert_same_checkpoints(one_node_run / "checkpoints" / FINAL, run / "checkpoints" / FINAL)
    assert (run / "samples" / "iter-00000009.png").is_file() and (run / "config.yaml").is_file()
    assert not list(run.glob(".infinitygan-shared-*"))
    writes = (tmp_path / "writes-1.txt").read_text().splitlines()
    assert writes == ["audited"], writes  # rank 1 ran, audited, and wrote nothing there


def _shared_folder_worker(root: str) -> None:
    """A rank of launch_local: its "node" is its rank, and each sees its own copy of the folder
    (the run folder of two machines without a shared file system); the outcome in a file."""
    from infinitygan.errors import UserError
    from infinitygan.parallel import env

    rank = env.env_world()[0]
    os.environ["GROUP_RANK"] = str(rank)
    ctx = env.setup(torch.device("cpu"))
    outcome = "ok"
    try:
        env.check_shared_folder(ctx, Path(root) / "shared", "the run folder")  # seen alike by both: fine
        env.check_shared_folder(ctx, Path(root) / f"node{rank}" / "run", "the run folder")
    except UserError as e:
        outcome = f"UserError: {e}"
    except SystemExit as e:
        outcome = f"exit {e.code}"
    finally:
        env.teardown(ctx)
    Path(root, f"outcome-{rank}.txt").write_text(outcome)


def test_a_run_folder_one_node_cannot_see_is_refused_naming_the_node(tmp_path):
    """Rank 0 writes a token in the folder, every rank reads it back: a rank that cannot is named
    (rank, host, node) in rank 0's one line, the others stop with status 2, no token is left."""
    import socket

    from infinitygan.parallel.env import SHARED_TOKEN, launch_local

    launch_local(2, _shared_folder_worker, str(tmp_path))
    assert (tmp_path / "outcome-0.txt").read_text() == (
        f"UserError: rank 1 on {socket.gethostname()} (node 1): the run folder {tmp_path / 'node1' / 'run'} is not "
        "shared with rank 0: this node cannot see the file rank 0 wrote there (it must be on a file system every "
        "node mounts at the same path)")
    assert (tmp_path / "outcome-1.txt").read_text() == "exit 2"
    assert not [p for p in tmp_path.rglob(f"{SHARED_TOKEN}*")]


GENERATE = ["--seed", "3", "--width", "200", "--height", "120", "--tile", "32", "--x", "-37", "--y", "-50",
            "--device", "cpu", "--quiet"]


def test_two_nodes_generate_the_bytes_of_one_process(tiny_model_file, tmp_path):
    from infinitygan.cli import main

    assert main(["generate", "--model", str(tiny_model_file), *GENERATE, "--out", str(tmp_path / "one.npy")]) == 0
    results = two_nodes(["-m", "infinitygan", "generate", "--model", str(tiny_model_file), *GENERATE,
                         "--out", str(tmp_path / "two.npy")], (tmp_path, tmp_path))
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "two.npy").read_bytes() == (tmp_path / "one.npy").read_bytes()
