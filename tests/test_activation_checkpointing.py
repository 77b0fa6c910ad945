"""Activation checkpointing (``train --checkpoint-activations``): the same function and gradients.

* every phase of an iteration (D, R1, G, path length: R1 and path length differentiate a
  gradient) gives the same losses and the same gradient for every parameter of G and D, in
  float64, with and without checkpointing, also when every wide layer is recomputed in
  output-channel groups (as the 389-pixel layers are);
* the double backward of a checkpointed segment passes ``gradgradcheck``, with per-sample
  recomputation and a broadcast input;
* whole training runs (CPU, deterministic; DDP on two processes) end with the same weights;
* it holds less: the tensor memory of each phase is measured (torch.profiler) at 389 pixels;
* the option is off by default, changes no state-dict key and leaves G_ema alone.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from infinitygan.config import ModelConfig, load_config
from infinitygan.nn.checkpointing import checkpoint_segment, set_activation_checkpointing
from infinitygan.parallel.env import DistContext, launch_local
from infinitygan.training.inputs import BatchPlan, FakeInputs
from infinitygan.training.loop import train
from infinitygan.training.nets import build_nets, requires_grad
from infinitygan.training.options import RunOptions
from infinitygan.training.phases import Stats, TrainingLoss, uses_pairs
from infinitygan.training.state import Progress

from test_training import MICRO as _MICRO, one_thread  # noqa: E402,F401 (autouse fixture)

MICRO = {**_MICRO, "training": {**_MICRO["training"], "checkpoint_every": 100, "sample_every": 100}}
RUN = dict(device="cpu", workers=0, quiet=True, samples=False, deterministic=True)




def micro_cfg(**training) -> ModelConfig:
    d = json.loads(json.dumps(MICRO))
    d["training"].update(training)
    return ModelConfig.from_dict(d)


class Float64Plan:
    """A BatchPlan whose latents, noises, coordinates and directions are float64."""

    def __init__(self, plan: BatchPlan):
        self.plan = plan

    @staticmethod
    def _cast(x: FakeInputs) -> FakeInputs:
        f = lambda t: t.double() if torch.is_tensor(t) and t.is_floating_point() else t  # noqa: E731
        return dataclasses.replace(x, zg=f(x.zg), zl=f(x.zl), coords=f(x.coords), label=f(x.label),
                                   noises=[f(n) for n in x.noises], zg_mix=f(x.zg_mix))

    def d_inputs(self, t):
        return self._cast(self.plan.d_inputs(t))

    def g_inputs(self, t):
        return self._cast(self.plan.g_inputs(t))

    def pl_inputs(self, t):
        x, y = self.plan.pl_inputs(t)
        return self._cast(x), y.double()


def phase_results(cfg: ModelConfig, checkpoint: bool) -> dict:
    """{phase: (loss, {parameter name: gradient})} of iteration 0 in float64, with every
    parameter of G and D requiring grad in every phase (more than training needs: all of them
    are compared)."""
    ctx = DistContext()
    nets = build_nets(cfg, ctx, 0, checkpoint_activations=checkpoint)
    for m in (nets.G, nets.D):
        m.double()
    plan = Float64Plan(BatchPlan.make(cfg, nets.G.geometry, 0, ctx, pairs=uses_pairs(cfg)))
    loss = TrainingLoss(cfg, nets, plan, ctx, None, Progress(), Stats())
    gen = torch.Generator().manual_seed(1)
    P, B = cfg.generator.patch_size, cfg.training.batch_size
    real = torch.rand(B, 3, P, P, generator=gen, dtype=torch.float64) * 2 - 1
    label = torch.rand(B, generator=gen, dtype=torch.float64) * 2 - 1
    named = [("G." + n, p) for n, p in nets.G.named_parameters()] + [("D." + n, p) for n, p in nets.D.named_parameters()]
    out = {}
    for ph in ("d", "r1", "g", "pl"):
        requires_grad(nets.G, True)
        requires_grad(nets.D, True)
        value, _, _ = getattr(loss, f"_{ph}")(0, real, label)
        value.backward()
        out[ph] = (value.detach(), {n: p.grad.clone() for n, p in named if p.grad is not None})
        for _, p in named:
            p.grad = None
    return out


@pytest.fixture(scope="module")
def float64_runs():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # (set up before the function-scoped one_thread)
    try:
        cfg = micro_cfg()
        return phase_results(cfg, False), phase_results(cfg, True)
    finally:
        torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def float64_grouped():
    """Checkpointing with every wide layer (G's styled convs, D's convs) recomputed in channel
    groups (``GROUP_BYTES`` tiny): (phase results, the partial channel calls seen)."""
    import infinitygan.nn.checkpointing as ckm
    from infinitygan.discriminator import ConvLayer
    from infinitygan.texture import StyledConv

    calls = []

    def counting(f):
        def run(self, channels, *a):
            if channels != slice(None):
                calls.append(type(self).__name__)
            return f(self, channels, *a)
        return run

    saved = ckm.GROUP_BYTES, StyledConv.forward_channels, ConvLayer.forward_channels
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ckm.GROUP_BYTES = 64
        StyledConv.forward_channels = counting(saved[1])
        ConvLayer.forward_channels = counting(saved[2])
        return phase_results(micro_cfg(), True), calls
    finally:
        ckm.GROUP_BYTES, StyledConv.forward_channels, ConvLayer.forward_channels = saved
        torch.set_num_threads(prev)


@pytest.mark.parametrize("grouped", [False, True], ids=["whole", "channel-groups"])
@pytest.mark.parametrize("phase", ["d", "r1", "g", "pl"])
def test_same_loss_and_gradients_in_float64(float64_runs, float64_grouped, phase, grouped):
    off, on = float64_runs
    if grouped:
        on, calls = float64_grouped
        assert {"StyledConv", "ConvLayer"} <= set(calls)
    (loss_a, grads_a), (loss_b, grads_b) = off[phase], on[phase]
    assert abs(float(loss_a) - float(loss_b)) <= 1e-10 * max(abs(float(loss_a)), 1.0)
    assert grads_a.keys() == grads_b.keys()
    nets = {k.split(".")[0] for k in grads_a}
    # D trains in d and r1 (G runs without grad in d); the G and path-length phases reach G, and G's reaches D too
    assert nets == {"d": {"D"}, "r1": {"D"}, "g": {"G", "D"}, "pl": {"G"}}[phase]
    if phase in ("g", "pl"):
        assert any(k.startswith("G.texture.") for k in grads_a) and any(k.startswith("G.structure.") for k in grads_a)
    zero = [k for k, a in grads_a.items() if not a.any()]
    assert len(zero) <= len(grads_a) // 3, zero  # (R1 has none for the biases before leaky ReLUs)
    for k, a in grads_a.items():
        b = grads_b[k]
        assert (a - b).abs().max().item() <= 1e-10 * max(a.abs().max().item(), 1e-30), k


def test_gradgradcheck_of_a_checkpointed_segment():
    """Second derivatives of a per-sample segment with a parameter, a per-sample style and a
    broadcast (1, ...) input, against finite differences."""
    torch.manual_seed(0)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)

    def fn(x, s, c):
        y = torch.nn.functional.conv2d(x * s[:, :, None, None] + c, w)
        return torch.nn.functional.leaky_relu(y, 0.2) ** 2, y.sin()

    x = torch.randn(3, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    s = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    c = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    seg = lambda x, s, c: checkpoint_segment(fn, [w], x, s, c, per_sample=True)  # noqa: E731
    assert torch.autograd.gradcheck(seg, (x, s, c))
    assert torch.autograd.gradgradcheck(seg, (x, s, c))
    # the parameter (read by fn, not an argument): R1-like loss ||d out / d x||^2
    gx, = torch.autograd.grad(seg(x, s, c)[0].sum(), x, create_graph=True)
    (gx.pow(2).sum()).backward()
    ref_w = w.grad.clone()
    w.grad = None
    gx, = torch.autograd.grad(fn(x, s, c)[0].sum(), x, create_graph=True)
    (gx.pow(2).sum()).backward()
    torch.testing.assert_close(ref_w, w.grad, rtol=1e-12, atol=1e-12)


def test_off_by_default_and_state_dict_unchanged():
    cfg = micro_cfg()
    assert RunOptions().checkpoint_activations is False
    plain, ck = build_nets(cfg, DistContext(), 0), build_nets(cfg, DistContext(), 0, checkpoint_activations=True)
    flags = lambda m: {type(x).__name__: x.checkpoint_segments for x in m.modules() if hasattr(type(x), "checkpoint_segments")}  # noqa: E731
    assert set(flags(plain.G).values()) == {False} and set(flags(plain.D).values()) == {False}
    assert flags(ck.G) == {"StructureSynthesizer": True, "TextureSynthesizer": True}
    assert flags(ck.D) == {"Discriminator": True, "ResBlock": True}
    assert set(flags(ck.G_ema).values()) == {False}
    for a, b in ((plain.G, ck.G), (plain.D, ck.D)):
        assert a.state_dict().keys() == b.state_dict().keys()
        assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert set_activation_checkpointing(ck.G, False) == 2 and not ck.G.texture.checkpoint_segments


def test_bf16_autocast_recomputes_in_bf16():
    """The recomputations (first and second order) run under the forward's autocast, and G's
    gradients under bf16 agree with those without checkpointing to bf16's precision."""
    seen = []
    w = torch.randn(4, 3, 3, 3, requires_grad=True)

    def fn(x):
        y = torch.nn.functional.conv2d(x, w)
        seen.append(y.dtype)
        return torch.nn.functional.leaky_relu(y, 0.2)

    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = checkpoint_segment(fn, [w], x, per_sample=True)
    gx, = torch.autograd.grad(out.float().square().sum(), x, create_graph=True)
    gx.square().sum().backward()
    assert len(seen) > 3 and set(seen) == {torch.bfloat16}, seen

    cfg = micro_cfg()
    grads = []
    for ck in (False, True):
        nets = build_nets(cfg, DistContext(), 0, checkpoint_activations=ck)
        plan = BatchPlan.make(cfg, nets.G.geometry, 0, DistContext(), pairs=uses_pairs(cfg))
        loss = TrainingLoss(cfg, nets, plan, DistContext(), "bf16", Progress(), Stats())
        requires_grad(nets.G, True)
        requires_grad(nets.D, False)
        value, _, _ = loss._g(0, None, None)
        value.backward()
        grads.append(torch.cat([p.grad.flatten() for p in nets.G.parameters()]))
    assert (grads[0] - grads[1]).norm() <= 0.03 * grads[0].norm()


def _final_weights(out: Path, iterations: int) -> dict:
    return load_file(str(out / "checkpoints" / f"ckpt-{iterations:08d}.safetensors"))


def assert_close_weights(a: dict, b: dict, rtol: float, rtol_moments: float) -> None:
    """Every tensor of two training checkpoints agrees to ``rtol`` of its largest entry (Adam's
    moments to ``rtol_moments``: a gradient that is a small difference of large terms, e.g. R1's
    for a bias, keeps the rounding of its terms); step counts exactly."""
    assert a.keys() == b.keys()
    for k in a:
        if k.endswith(".step"):
            assert torch.equal(a[k], b[k]), k
            continue
        tol = rtol_moments if "optim." in k else rtol
        err = (a[k].double() - b[k].double()).abs().max().item()
        assert err <= tol * max(a[k].double().abs().max().item(), 1e-6), (k, err)


def test_training_iterations_give_the_same_weights(tmp_path):
    """Five iterations (R1 at 0, 2, 4; path length at 0, 3), CPU, deterministic: the same weights.

    Not bit for bit: per-sample recomputation sums the parameters' gradients over the samples
    in another order than one batched kernel (float32 rounding; measured: weights within 4e-6
    of their largest entry, Adam's moments within 6e-4)."""
    cfg = micro_cfg(iterations=5)
    a = train(cfg, "procedural", tmp_path / "off", seed=3, options=RunOptions(**RUN))
    b = train(cfg, "procedural", tmp_path / "on", seed=3, options=RunOptions(**RUN, checkpoint_activations=True))
    assert a["iteration"] == b["iteration"] == 5 and a["nan_skips"] == b["nan_skips"] == 0
    A, B = _final_weights(tmp_path / "off", 5), _final_weights(tmp_path / "on", 5)
    assert_close_weights(A, B, rtol=2e-5, rtol_moments=3e-3)
    # the weights moved by far more than that (the comparison is not vacuous)
    init = build_nets(cfg, DistContext(), 3).G.state_dict()
    moved = max((A["g." + k] - v).abs().max().item() for k, v in init.items())
    assert moved > 1e-3


def _ddp_worker(out: str, result: str) -> None:
    res = train(micro_cfg(iterations=4), "procedural", out, seed=0,
                options=RunOptions(**RUN, checkpoint_activations=True))
    Path(f"{result}.{res['rank']}").write_text(json.dumps(res))


def test_two_processes_with_checkpointing_match_one_without(tmp_path):
    """DDP (gloo) with checkpointing, R1 and path length included == one process without it."""
    launch_local(2, _ddp_worker, str(tmp_path / "two"), str(tmp_path / "res"))
    r0, r1 = (json.loads((tmp_path / f"res.{i}").read_text()) for i in (0, 1))
    assert r0["world_size"] == 2 and r0["fingerprint"] == r1["fingerprint"]
    train(micro_cfg(iterations=4), "procedural", tmp_path / "one", seed=0, options=RunOptions(**RUN))
    A, B = _final_weights(tmp_path / "one", 4), _final_weights(tmp_path / "two", 4)
    assert_close_weights(A, B, rtol=1e-3, rtol_moments=1e-2)


def _tensor_peak_mb(fn) -> float:
    """Peak bytes held by tensors while ``fn`` runs, above those at its start (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak / 2 ** 20


def test_checkpointing_holds_less_memory():
    """The tiny preset at batch 4: every phase that trains through G or D holds much less with
    checkpointing (the 389-pixel figures: benchmarks/activation_memory.py, docs/benchmarks.md)."""
    cfg = load_config("tiny").with_training(batch_size=4)
    peaks = {}
    for ck in (False, True):
        nets = build_nets(cfg, DistContext(), 0, checkpoint_activations=ck)
        plan = BatchPlan.make(cfg, nets.G.geometry, 0, DistContext(), pairs=uses_pairs(cfg))
        loss = TrainingLoss(cfg, nets, plan, DistContext(), None, Progress(), Stats())
        P = cfg.generator.patch_size
        real = (torch.rand(4, 3, P, P) * 2 - 1).contiguous(memory_format=torch.channels_last)
        label = torch.zeros(4)
        for params, optim in ((nets.g_params, nets.g_optim), (nets.d_params, nets.d_optim)):
            for p in params:  # Adam's moments exist before the measurement (zero step: same weights)
                p.grad = torch.zeros_like(p)
            optim.step()
            optim.zero_grad(set_to_none=True)
        for ph in loss.phases:
            if ph.name != "d":
                peaks[ph.name, ck] = _tensor_peak_mb(lambda: loss.run(ph, 0, real, label))
    ratios = {name: round(peaks[name, True] / peaks[name, False], 3) for name, _ in peaks}
    print(peaks, ratios)
    assert max(ratios.values()) < 0.6, ratios


def test_train_cli_flag(tmp_path, capsys, monkeypatch):
    """``train --checkpoint-activations`` reaches the networks and trains (R1 and path length at
    iteration 0)."""
    import yaml

    import infinitygan.training.loop as loop
    from infinitygan.cli import main

    seen = []

    def recording_build_nets(*a, **k):
        nets = build_nets(*a, **k)
        seen.append((nets.G.texture.checkpoint_segments, nets.D.checkpoint_segments))
        return nets

    monkeypatch.setattr(loop, "build_nets", recording_build_nets)

    cfg = tmp_path / "micro.yaml"
    cfg.write_text(yaml.safe_dump(MICRO))
    rc = main(["train", "--config", str(cfg), "--iterations", "2", "--out", str(tmp_path / "run"), "--device", "cpu",
               "--workers", "0", "--quiet", "--checkpoint-activations"])
    assert rc in (0, None), capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoints" / "ckpt-00000002.safetensors").is_file()
    assert seen == [(True, True)]
