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
the double-backward phases, second gradient) for one sample. A wide layer (a module with a
``forward_channels(channels, *args)`` method, whose output channels are computed independently:
G's styled convs, D's convs) is recomputed a group of output channels at a time, so that each
group's output for one sample holds at most ``GROUP_BYTES``: at 389-pixel patches the
recomputation of the largest layers is then a few input-sized tensors instead of several
full-resolution outputs (docs/benchmarks.md, "Activation checkpointing").

Modules opt in with a ``checkpoint_segments`` attribute (False by default) that their forward
reads; :func:`set_activation_checkpointing` turns it on for every such module of a network.
Nothing changes without grad mode or when nothing requires grad (inference, G under no_grad).

Costs: one more forward of each segment in a single backward; in the double-backward phases,
two more forwards and one more backward of each segment; per-sample recomputation runs convs
on one sample at a time, a channel group at a time for wide layers.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.autograd.graph import get_gradient_edge

__all__ = ["GROUP_BYTES", "checkpoint_segment", "run_segment", "set_activation_checkpointing"]

#: the most bytes of one sample's output that a channel group of a wide layer recomputes at once
GROUP_BYTES = 20 * 2 ** 20


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
    channels_fn = getattr(module, "forward_channels", None) if fn is None else None
    return checkpoint_segment(fn or module, list(module.parameters()), *args, per_sample=True,
                              channels_fn=channels_fn)


def checkpoint_segment(fn: Callable, params: Sequence[torch.Tensor], *args: Any, per_sample: bool = False,
                       channels_fn: Callable | None = None):
    """``fn(*args)`` (a tensor or a tuple of tensors), keeping only ``args`` for the backward.

    ``params``: the parameters ``fn`` uses (its module's), so that their gradients flow through
    the checkpoint. ``args``: tensors, None or other constants; the first tensor is the batch
    (B, ...). ``per_sample``: ``fn`` treats each sample on its own, so the backward recomputes
    it one sample at a time (tensor arguments whose first dimension is B are split; others,
    e.g. (1, ...) broadcast coordinates, are passed whole). Runs ``fn`` directly when grad mode
    is off or no tensor requires grad. ``channels_fn(channels: slice, *args)``: output channels
    ``channels`` of ``fn(*args)`` (a single tensor (B, C, ...)), computed on their own; given, the
    backward recomputes ``fn`` in channel groups of at most ``GROUP_BYTES`` per sample.
    """
    params = [p for p in params if p.requires_grad]
    if not torch.is_grad_enabled() or not (params or any(torch.is_tensor(a) and a.requires_grad for a in args)):
        return fn(*args)
    slots = [i for i, a in enumerate(args) if torch.is_tensor(a)]
    consts = list(args)

    def fill(tensors):
        full = list(consts)
        for i, t in zip(slots, tensors):
            full[i] = t
        return full

    def call(*tensors):
        return fn(*fill(tensors))

    def call_channels(channels, *tensors):
        return channels_fn(channels, *fill(tensors))

    first = args[slots[0]]
    spec = _Spec(call, len(slots), _autocast_state(first.device.type),
                 first.shape[0] if per_sample and first.dim() > 0 and first.shape[0] > 1 else None,
                 call_channels if channels_fn is not None else None)
    return _Segment.apply(spec, *[args[i] for i in slots], *params)


class _Spec:
    """What a segment's backward needs besides tensors: the call, how many of its tensors are
    inputs (the rest are parameters), the autocast state of the forward, the batch size when it
    is recomputed per sample (None: whole), the call of a channel group (None: none) and the
    groups (set by the forward from its output; None: the whole output at once)."""

    def __init__(self, call: Callable, n_in: int, autocast: tuple, batch: int | None,
                 call_channels: Callable | None = None):
        self.call, self.n_in, self.autocast, self.batch = call, n_in, autocast, batch
        self.call_channels = call_channels
        self.groups: list[slice] | None = None
        self.groups_first_order = False

    def set_groups(self, out, first_input: torch.Tensor) -> None:
        """Channel groups of at most GROUP_BYTES of one sample's output (B, C, ...). A first
        gradient is recomputed in groups only when the output is at least as large as the first
        input (a downsampling layer's groups would each hold an input-sized gradient, summed)."""
        if self.call_channels is None or not torch.is_tensor(out) or out.dim() < 2:
            return
        self.groups_first_order = out.numel() * out.element_size() >= first_input.numel() * first_input.element_size()
        per = out.numel() // (out.shape[0] if self.batch else 1) * out.element_size()
        n = -(-per // GROUP_BYTES)
        if n > 1:
            size = -(-out.shape[1] // n)
            self.groups = [slice(c, min(c + size, out.shape[1])) for c in range(0, out.shape[1], size)]


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


def _channels(t, c: slice | None):
    """Channel group ``c`` of a (B, C, ...) output gradient (None: all of it)."""
    return t if c is None or t is None else t[:, c]


def _add(acc: list | None, part: list) -> list:
    """Elementwise sum of two gradient lists (None: nothing); in place where no graph is kept."""
    if acc is None:
        return part
    out = []
    for a, b in zip(acc, part):
        if a is None or b is None:
            out.append(b if a is None else a)
        elif a.requires_grad or b.requires_grad or a._base is not None:
            out.append(a + b)
        else:
            out.append(a.add_(b))
    return out


def _cat_channels(parts: Sequence[tuple]) -> torch.Tensor | None:
    """(gradient or None, its leaf) per channel group -> the gradients concatenated on dim 1
    (zeros for a group without one; None if none has one)."""
    if all(g is None for g, _ in parts):
        return None
    got = [g if g is not None else torch.zeros_like(t) for g, t in parts]
    return torch.cat(got, dim=1) if len(got) > 1 else got[0]


def _vjp_once(spec: _Spec, ins: Sequence, grads: Sequence, wrt: Sequence[int], create_graph: bool,
              channels: slice | None = None) -> list:
    """Recompute the segment (its output channels ``channels`` only, when given) on ``ins`` and
    return the gradients of the inputs/parameters at positions ``wrt`` given output gradients
    ``grads`` (of those channels; None entries: no gradient)."""
    with torch.enable_grad(), _autocast(spec.autocast):
        if channels is None:
            outs = _as_tuple(spec.call(*ins[:spec.n_in]))
        else:
            outs = _as_tuple(spec.call_channels(channels, *ins[:spec.n_in]))
    pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
    targets = [ins[i] for i in wrt]
    if not pairs or not targets:
        return [None] * len(wrt)
    return list(torch.autograd.grad([o for o, _ in pairs], targets, [g for _, g in pairs],
                                    create_graph=create_graph, allow_unused=True))


def _vjp(spec: _Spec, tensors: Sequence, grads: Sequence, wrt: Sequence[int]) -> list:
    """First-order gradients at ``wrt``, recomputed sample by sample and channel group by
    channel group (summed over the groups; no graph; see ``_Spec.set_groups``)."""
    parts = []
    for sl in _slices(spec.batch):
        ins, got = _leaves(spec, tensors, sl), None
        for c in (spec.groups if spec.groups_first_order else None) or [None]:
            gs = [_channels(_take(g, sl, spec.batch), c) for g in grads]
            got = _add(got, _vjp_once(spec, ins, gs, wrt, create_graph=False, channels=c))
        parts.append(got)
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
        spec.set_groups(out, tensors[0])
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
            # the incoming gradient of a per-sample input's gradient is split; of a parameter's
            # (a sum over the samples) it is the same for every sample
            ggs_s = [_take(gg, sl, B, split=i < spec.n_in and _batched(tensors[i], B)) for i, gg in used]
            # per channel group: the inputs' and parameters' gradients are summed over the
            # groups, the output gradients' (one group's channels each) concatenated
            summed, by_group = None, []
            for c in spec.groups or [None]:
                gs = [_leaf(_channels(_take(g, sl, B), c)) for g in grads]
                first = _vjp_once(spec, ins, gs, [i for i, _ in used], create_graph=True, channels=c)
                # only the first gradients' graph is needed, not their values (input-sized): held
                # by their edges, they are freed before the second backward runs
                pairs = [(get_gradient_edge(f), gg) for f, gg in zip(first, ggs_s) if f is not None and f.requires_grad]
                del first
                targets = [(ins + gs)[j] for j in want]
                got = [None] * len(want)
                if pairs:
                    got = list(torch.autograd.grad([f for f, _ in pairs], targets, [gg for _, gg in pairs],
                                                   create_graph=torch.is_grad_enabled(), allow_unused=True))
                summed = _add(summed, [g if j < n_t else None for j, g in zip(want, got)])
                by_group.append([(g, t) for j, g, t in zip(want, got, targets) if j >= n_t])
            of_grads = iter([_cat_channels(gt) for gt in zip(*by_group)])
            parts.append([summed[k] if j < n_t else next(of_grads) for k, j in enumerate(want)])
        split = [(j < spec.n_in and _batched(saved[j], B)) or (j >= n_t and _batched(saved[j], B)) for j in want]
        for j, g in zip(want, _combine(parts, split)):
            result[j] = g
        return (None, None, None, *result)
