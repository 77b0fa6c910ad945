"""Activation checkpointing of network segments, exact under double backward (opt-in, training).

A segment (one layer of G or D) run through :func:`checkpoint_segment` keeps only its tensor
inputs for the backward pass; the activations inside it are recomputed when the backward
reaches it, one segment at a time and, for a ``per_sample`` segment, one sample at a time. The
result is the same function with the same gradients (up to float rounding: a sample recomputed
alone may round differently from the batch, and the parameters' gradients are summed over the
samples in another order).

Why not only ``torch.utils.checkpoint``: R1 and the path-length penalty differentiate a
gradient (``autograd.grad(..., create_graph=True)``, then a backward through it). Under
``torch.utils.checkpoint`` the graph of that first gradient holds every activation it reads
(each conv's input for its double backward, each leaky ReLU's input for its mask) plus its own
gradient tensors, so those two phases keep as much memory as without checkpointing. Here the
first gradient of a segment is itself a checkpointed op (:class:`_SegmentVJP`): it keeps the
segment's inputs and the incoming gradient, and recomputes the rest in the second backward.
(In a third-order graph a segment stays exact, only no longer memory-light.)

What is kept: the input of every segment, and in the double-backward phases also the gradient
arriving at its output. The peak adds one segment's recomputation (forward, first and, in
the double-backward phases, second gradient) for one sample: at 389-pixel patches the largest
layer's working set, several full-resolution tensors, is what the memory of batch 1 cannot go
below (docs/benchmarks.md, "Activation checkpointing").

Modules opt in with a ``checkpoint_segments`` attribute (False by default) that their forward
reads; :func:`set_activation_checkpointing` turns it on for every such module of a network.
Nothing changes without grad mode or when nothing requires grad (inference, G under no_grad).

Costs: one more forward of each segment in a single backward; in the double-backward phases,
two more forwards and one more backward of each segment; per-sample recomputation runs convs
on one sample at a time.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.autograd.graph import get_gradient_edge

__all__ = ["checkpoint_segment", "run_segment", "set_activation_checkpointing"]


def set_activation_checkpointing(net: nn.Module, enabled: bool = True) -> int:
    """Set ``checkpoint_segments`` on every submodule of ``net`` that declares it; returns how many."""
    n = 0
    for m in net.modules():
        if hasattr(type(m), "checkpoint_segments"):
            m.checkpoint_segments = bool(enabled)
            n += 1
    return n


def run_segment(enabled: bool, module: nn.Module, *args: Any, fn: Callable | None = None):
    """``(fn or module)(*args)``, checkpointed per sample (:func:`checkpoint_segment`, with the
    module's parameters) when ``enabled``: the call a module's forward makes for each of its
    segments. Every segment of G and D is per sample (no op inside mixes samples; minibatch
    stddev is outside them)."""
    if not enabled:
        return (fn or module)(*args)
    return checkpoint_segment(fn or module, list(module.parameters()), *args, per_sample=True)


def checkpoint_segment(fn: Callable, params: Sequence[torch.Tensor], *args: Any, per_sample: bool = False):
    """``fn(*args)`` (a tensor or a tuple of tensors), keeping only ``args`` for the backward.

    ``params``: the parameters ``fn`` uses (its module's), so that their gradients flow through
    the checkpoint. ``args``: tensors, None or other constants; the first tensor is the batch
    (B, ...). ``per_sample``: ``fn`` treats each sample on its own, so the backward recomputes
    it one sample at a time (tensor arguments whose first dimension is B are split; others,
    e.g. (1, ...) broadcast coordinates, are passed whole). Runs ``fn`` directly when grad mode
    is off or no tensor requires grad.
    """
    params = [p for p in params if p.requires_grad]
    if not torch.is_grad_enabled() or not (params or any(torch.is_tensor(a) and a.requires_grad for a in args)):
        return fn(*args)
    slots = [i for i, a in enumerate(args) if torch.is_tensor(a)]
    consts = list(args)

    def call(*tensors):
        full = list(consts)
        for i, t in zip(slots, tensors):
            full[i] = t
        return fn(*full)

    first = args[slots[0]]
    spec = _Spec(call, len(slots), _autocast_state(first.device.type),
                 first.shape[0] if per_sample and first.dim() > 0 and first.shape[0] > 1 else None)
    return _Segment.apply(spec, *[args[i] for i in slots], *params)


class _Spec:
    """What a segment's backward needs besides tensors: the call, how many of its tensors are
    inputs (the rest are parameters), the autocast state of the forward, the batch size when it
    is recomputed per sample (None: whole)."""

    def __init__(self, call: Callable, n_in: int, autocast: tuple, batch: int | None):
        self.call, self.n_in, self.autocast, self.batch = call, n_in, autocast, batch


def _autocast_state(device_type: str) -> tuple:
    return device_type, torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


def _autocast(state: tuple):
    device_type, enabled, dtype = state
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def _discard(t):
    return None


def _never(_):
    raise RuntimeError("a checkpointed segment's forward graph was used for a backward")


def _engine_needs(t: torch.Tensor | None) -> bool:
    """Whether the running backward will use a gradient for ``t`` (e.g. not the parameters' in
    R1's first gradient, taken only with respect to the images)."""
    if t is None or not t.requires_grad:
        return False
    try:
        return bool(torch._C._will_engine_execute_node(get_gradient_edge(t).node))
    except (AttributeError, RuntimeError):  # not inside a backward, or an older PyTorch
        return True


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


# ------------------------------------------------------------------- per-sample recomputation
def _batched(t, batch: int | None) -> bool:
    return batch is not None and t is not None and t.dim() > 0 and t.shape[0] == batch


def _slices(batch: int | None) -> list:
    return [slice(None)] if batch is None else [slice(b, b + 1) for b in range(batch)]


def _take(t, sl: slice, batch: int | None, split: bool = True):
    return t[sl] if split and _batched(t, batch) else t


def _leaf(t):
    """A fresh leaf with t's values, requiring grad as t does (None stays None)."""
    return None if t is None else t.detach().requires_grad_(t.requires_grad)


def _leaves(spec: _Spec, tensors: Sequence, sl: slice) -> list:
    """The segment's inputs (sample ``sl``) as fresh leaves, followed by its parameters (which
    stay themselves: ``call`` reads them from its module)."""
    return [_leaf(_take(t, sl, spec.batch)) if i < spec.n_in else t for i, t in enumerate(tensors)]


def _combine(parts: list[list], batched: Sequence[bool]) -> list:
    """Per-sample gradients -> whole: concatenated where the tensor is per sample, summed where
    it is shared (parameters, broadcast inputs)."""
    out = []
    for k, split in enumerate(batched):
        got = [p[k] for p in parts]
        if all(g is None for g in got):
            out.append(None)
        elif len(got) == 1:
            out.append(got[0])
        elif split:
            ref = next(g for g in got if g is not None)
            out.append(torch.cat([g if g is not None else torch.zeros_like(ref) for g in got]))
        else:
            out.append(sum(g for g in got if g is not None))
    return out


def _vjp_once(spec: _Spec, ins: Sequence, grads: Sequence, wrt: Sequence[int], create_graph: bool) -> list:
    """Recompute the segment on ``ins`` and return the gradients of the inputs/parameters at
    positions ``wrt`` given output gradients ``grads`` (None entries: no gradient)."""
    with torch.enable_grad(), _autocast(spec.autocast):
        outs = _as_tuple(spec.call(*ins[:spec.n_in]))
    pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
    targets = [ins[i] for i in wrt]
    if not pairs or not targets:
        return [None] * len(wrt)
    return list(torch.autograd.grad([o for o, _ in pairs], targets, [g for _, g in pairs],
                                    create_graph=create_graph, allow_unused=True))


def _vjp(spec: _Spec, tensors: Sequence, grads: Sequence, wrt: Sequence[int]) -> list:
    """First-order gradients at ``wrt``, recomputed sample by sample (no graph)."""
    parts = []
    for sl in _slices(spec.batch):
        gs = [_take(g, sl, spec.batch) for g in grads]
        parts.append(_vjp_once(spec, _leaves(spec, tensors, sl), gs, wrt, create_graph=False))
    return _combine(parts, [i < spec.n_in and _batched(tensors[i], spec.batch) for i in wrt])


# ------------------------------------------------------------------------ the two functions
class _Segment(torch.autograd.Function):
    """fn(inputs) with params; saves the inputs only."""

    @staticmethod
    def forward(ctx, spec: _Spec, *tensors):
        ctx.spec = spec
        ctx.save_for_backward(*tensors)
        ctx.set_materialize_grads(False)
        ins = _leaves(spec, tensors, slice(None))
        # the same code path as without checkpointing (grad mode on), nothing kept
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_discard, _never):
            out = spec.call(*ins[:spec.n_in])
        if isinstance(out, (tuple, list)):
            return tuple(o.detach() for o in out)
        return out.detach()

    @staticmethod
    def backward(ctx, *grads):
        spec = ctx.spec
        tensors = ctx.saved_tensors
        wrt = [i for i, t in enumerate(tensors) if ctx.needs_input_grad[1 + i] and _engine_needs(t)]
        result: list = [None] * len(tensors)
        if wrt and any(g is not None for g in grads):
            if torch.is_grad_enabled():  # create_graph: the gradient is itself a checkpointed op
                got = _SegmentVJP.apply(spec, tuple(wrt), len(tensors), *tensors, *grads)
            else:
                got = _vjp(spec, tensors, grads, wrt)
            for i, g in zip(wrt, got):
                result[i] = g
        return (None, *result)


class _SegmentVJP(torch.autograd.Function):
    """The gradient of a segment (inputs, params, output gradients -> input/param gradients at
    ``wrt``) as a differentiable op that saves only its inputs."""

    @staticmethod
    def forward(ctx, spec: _Spec, wrt: tuple, n_tensors: int, *tensors_and_grads):
        ctx.spec, ctx.wrt, ctx.n_tensors = spec, wrt, n_tensors
        ctx.save_for_backward(*tensors_and_grads)
        ctx.set_materialize_grads(False)
        tensors, grads = tensors_and_grads[:n_tensors], tensors_and_grads[n_tensors:]
        got = _vjp(spec, tensors, grads, list(wrt))
        # a gradient that does not exist is zero (a Function's outputs are tensors)
        return tuple(g.detach() if g is not None else torch.zeros_like(tensors[i]) for i, g in zip(wrt, got))

    @staticmethod
    def backward(ctx, *ggs):
        spec, wrt, n_t = ctx.spec, ctx.wrt, ctx.n_tensors
        saved = ctx.saved_tensors
        tensors, grads = saved[:n_t], saved[n_t:]
        want = [j for j, t in enumerate(saved) if ctx.needs_input_grad[3 + j] and _engine_needs(t)]
        used = [(i, gg) for i, gg in zip(wrt, ggs) if gg is not None]
        result: list = [None] * len(saved)
        if not (want and used):
            return (None, None, None, *result)
        B = spec.batch
        parts = []
        for sl in _slices(B):
            ins = _leaves(spec, tensors, sl)
            gs = [_leaf(_take(g, sl, B)) for g in grads]
            # the incoming gradient of a per-sample input's gradient is split; of a parameter's
            # (a sum over the samples) it is the same for every sample
            ggs_s = [_take(gg, sl, B, split=i < spec.n_in and _batched(tensors[i], B)) for i, gg in used]
            first = _vjp_once(spec, ins, gs, [i for i, _ in used], create_graph=True)
            pairs = [(f, gg) for f, gg in zip(first, ggs_s) if f is not None and f.requires_grad]
            if not pairs:
                parts.append([None] * len(want))
                continue
            targets = [(ins + gs)[j] for j in want]
            parts.append(list(torch.autograd.grad([f for f, _ in pairs], targets, [gg for _, gg in pairs],
                                                   create_graph=torch.is_grad_enabled(), allow_unused=True)))
        split = [(j < spec.n_in and _batched(saved[j], B)) or (j >= n_t and _batched(saved[j], B)) for j in want]
        for j, g in zip(want, _combine(parts, split)):
            result[j] = g
        return (None, None, None, *result)
