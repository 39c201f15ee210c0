"""The streamed forward pass: one decoder layer in memory at a time, every weight read once.

1. Capture: the weights before the decoder layers (embeddings) are loaded; each sample runs through the model
   until a pre-hook on the first decoder layer stops it, keeping the layer's inputs: the hidden states and
   every keyword argument (attention mask, position ids, rotary ``position_embeddings``; the cache is off),
   so no per-family code builds them. Those weights are freed.
2. Layers, outer loop: layer i's weights are loaded (a helper thread meanwhile has the operating system read
   layer i+1's bytes into the page cache, which holds no process memory), every batch of samples runs through
   it (inner loop) and its output replaces its input; then it is freed and its storage is reused by layer
   i+1. Samples go in batches of about ``TOKENS_PER_CALL`` tokens: a layer's weights are in memory for all
   samples anyway, and one call over 16 x 32 tokens runs its matrix products
   far faster than 16 calls over 32 (all samples have the same length, so no padding is involved).
   Hooks registered on the selected modules feed the statistics as the samples pass.
3. Tail (``tail=True``): the weights after the layers (final norm, head) are loaded and the model's own
   forward runs with the layers replaced by the outputs already computed, giving the logits and the tail
   modules' statistics. Untied models read every byte once; a head tied to the embeddings reads the table
   again.

Hidden states live on the offload device, in a memory-mapped file when they would not fit the budget.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from streamscope.activation.weights import WeightLoader


#: Tokens per layer call when ``batch_size`` is automatic: samples are batched up to this many tokens (at
#: least one sample per call). Batching samples makes the forward much faster than one sample per call, and 256
#: tokens per call is as fast as 512 with less peak memory (benchmarks/README.md): the activations inside a layer
#: (and the math library's buffers for them) grow with the batch (a 72B MLP: 256 tokens x 29568 x 4 bytes = 30 MB
#: per intermediate tensor).
TOKENS_PER_CALL = 256


class _Captured(Exception):
    """Raised by the first layer's pre-hook: the inputs are kept, the rest of the forward is not needed."""


@dataclass
class LayerInputs:
    """What the first decoder layer receives besides the hidden states, shared by all batches when equal."""

    args: list = field(default_factory=list)  # per batch: positional args after the hidden states
    kwargs: list = field(default_factory=list)  # per batch: keyword args
    shared: bool = True

    def for_batch(self, j: int) -> tuple[tuple, dict]:
        i = 0 if self.shared else j
        return self.args[i], self.kwargs[i]


def batches(n: int, seq: int, batch_size: int | None = None) -> list[tuple[int, int]]:
    """``(start, stop)`` sample ranges of the layer calls: ``batch_size`` samples each, or, when None, as many
    as fit ``TOKENS_PER_CALL`` tokens (at least one)."""
    b = batch_size or max(1, TOKENS_PER_CALL // max(seq, 1))
    return [(s, min(n, s + b)) for s in range(0, n, b)]


@dataclass
class ForwardResult:
    hidden: object  # (num_samples, seq, hidden) final hidden states
    logits: object | None  # the model's output (logits, or the last hidden state of an encoder)
    layer_outputs: list | None  # per layer (num_samples, seq, hidden) when kept (tests)
    seconds: float
    bytes_read: int
    spilled_to: str | None
    batch_size: int = 1  # samples per layer call
    resumed_after: int | None = None  # the decoder layers a resumed run took from its checkpoint


def run(skeleton, index, input_ids, dtype, device, on_layer: Callable[[int, object], None] | None = None,
        hidden_budget: int | None = None, keep_layer_outputs: bool = False, tail: bool = True,
        progress: Callable[[str, int, int], None] | None = None, spill_dir: Path | None = None,
        batch_size: int | None = None, layer_done: Callable[[int, object, bool], None] | None = None,
        resume: tuple[int, object, bool] | None = None, streams: tuple = (),
        layer_end: Callable[[int, object], None] | None = None,
        on_logits: Callable[[tuple[int, int], list], None] | None = None) -> ForwardResult:  # fmt: skip
    """Stream ``input_ids`` (num_samples x seq) through the model of ``skeleton``.

    ``on_layer(i, module)`` runs after layer i is loaded and before its samples (weight statistics);
    ``layer_done(i, hidden, as_tuple)`` after every sample has passed layer i (``as_tuple``: the layer returns a
    tuple); ``progress(stage, done, total)`` reports. ``batch_size``: samples per layer call (None: see
    ``batches``). ``resume``: ``(i, hidden states after layer i, as_tuple)`` of an earlier run: layers 0..i are
    neither read nor run.

    ``streams``: further hidden-state streams (objects with ``enter(i, layer)`` and ``leave(i, layer)``), each
    starting from the same captured inputs (or, resuming, from its ``resumed`` hidden states; ``reference``:
    the float stream's) and run through every layer
    after the float samples, between its ``enter`` (which may change the layer's weights in place) and ``leave``; each gets a ``hidden`` store.
    ``layer_end(i, layer)`` runs after the float samples, before the streams, with the weights still loaded.
    ``on_logits(span, outputs)`` receives the tail's outputs of the float stream and of every stream per batch
    of samples; the logits are then not kept.
    """
    t0 = time.perf_counter()
    model, layers = skeleton.model, skeleton.layers
    n_layers = len(layers)
    loader = WeightLoader(model, index, skeleton.layers_name, n_layers, dtype)
    loader.plan()
    before, after = _split_rest(model, skeleton.layers_name, loader)
    n, seq = input_ids.shape
    spans = batches(n, seq, batch_size)
    pool = ThreadPoolExecutor(1, thread_name_prefix="streamscope-weights")
    pending = pool.submit(loader.fetch_names, before)

    def read_ahead(i: int):
        return pool.submit(loader.advise, loader.parts.get(f"layer {i}", []))

    try:
        # 1. capture the first layer's inputs
        start = resume[0] + 1 if resume else 0
        loader.load(pending.result())
        pending = read_ahead(start) if start < n_layers else pool.submit(lambda: None)
        hidden, inputs, spilled = _capture(model, layers[0], input_ids, spans, dtype, device, hidden_budget, spill_dir)
        if resume:
            hidden.copy_(resume[1])
        for stream in streams:
            stream.hidden, _ = _hidden_store(tuple(hidden.shape), dtype, hidden_budget, spill_dir)
            resumed = getattr(stream, "resumed", None)  # its hidden states after the resumed layer
            stream.hidden.copy_(resumed if resume and resumed is not None else hidden)
            stream.reference = hidden
        loader.free_names(before)
        if progress:
            progress("layers", start, n_layers)
        outputs = [] if keep_layer_outputs else None
        returns_tuple = bool(resume and resume[2])
        # 2. layer-outer, batch-inner
        for i, layer in enumerate(layers):
            if i < start:
                continue
            pending.result()  # the advice for this layer was given: its reads are under way or done
            loader.load_part(f"layer {i}")
            if i + 1 < n_layers:
                pending = read_ahead(i + 1)
            if device.type != "cpu":
                layer.to(device)
                loader.moved()
            if on_layer:
                on_layer(i, layer)
            returns_tuple = _through(layer, hidden, spans, inputs, device)
            if layer_end:
                layer_end(i, layer)
            for stream in streams:
                stream.enter(i, layer)
                _through(layer, stream.hidden, spans, inputs, device)
                stream.leave(i, layer)
            loader.free(layer)
            if layer_done:
                layer_done(i, hidden, returns_tuple)
            _trim_heap()
            if outputs is not None:
                outputs.append(hidden.clone())
            if progress:
                progress("layers", i + 1, n_layers)
        loader.release()
        stores = [hidden] + [stream.hidden for stream in streams]
        result_logits = _logits(model, layers, loader, before, after, stores, input_ids, spans, device, returns_tuple, on_logits) if tail else None
    finally:
        pool.shutdown(wait=True)
    return ForwardResult(hidden, result_logits, outputs, time.perf_counter() - t0, loader.bytes_read, spilled, spans[0][1] - spans[0][0])


def _through(layer, hidden, spans, inputs, device) -> bool:
    """Every batch of samples through ``layer``, each output replacing its input in ``hidden``; returns
    whether the layer returns a tuple."""
    import torch

    returns_tuple = False
    with torch.no_grad():
        for j, (s0, s1) in enumerate(spans):
            args, kwargs = inputs.for_batch(j)
            out = layer(hidden[s0:s1].to(device), *args, **kwargs)
            returns_tuple = isinstance(out, tuple)
            h = out[0] if returns_tuple else out
            hidden[s0:s1] = h.to(hidden.device)
    return returns_tuple


def _libc():
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _trim_heap() -> None:
    """Return the heap's free pages after each layer: the statistics' many sub-MiB temporaries otherwise
    leave it fragmented, the resident size growing layer after layer (benchmarks/README.md)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _split_rest(model, layers_name: str, loader: WeightLoader) -> tuple[list[str], list[str]]:
    """The checkpoint tensors outside the layers, split into those of modules registered before the layer
    list (embeddings: needed to capture) and after it (final norm, head: needed only for logits)."""
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    layers_at = order[layers_name]
    targets = loader._target_names()
    before, after = [], []
    for name in loader.parts.get("rest", []):
        module = targets[name].rsplit(".", 1)[0] if "." in targets[name] else ""
        while module and module not in order:
            module = module.rsplit(".", 1)[0] if "." in module else ""
        (before if order.get(module, 0) < layers_at else after).append(name)
    return before, after


def _capture(model, first, input_ids, spans, dtype, device, budget, spill_dir):
    import torch

    inputs = LayerInputs()
    state = {}

    def hook(module, args, kwargs):
        state["args"], state["kwargs"] = args, kwargs
        raise _Captured

    handle = first.register_forward_pre_hook(hook, with_kwargs=True)
    hidden = None
    spilled = None
    try:
        with torch.no_grad():
            for j, (s0, s1) in enumerate(spans):
                try:
                    model(input_ids=input_ids[s0:s1].to(device), use_cache=False)
                except _Captured:
                    pass
                else:
                    raise RuntimeError("the model's forward never reached its first decoder layer")
                args, kwargs = state["args"], dict(state["kwargs"])
                h = args[0] if args else kwargs.pop("hidden_states")
                rest = tuple(args[1:])
                if hidden is None:
                    hidden, spilled = _hidden_store((input_ids.shape[0], *h.shape[1:]), dtype, budget, spill_dir)
                hidden[s0:s1] = h.to(hidden.device, dtype)
                rest, kwargs = _detach((rest, kwargs))
                if inputs.args and inputs.shared and not _same((rest, kwargs), (inputs.args[0], inputs.kwargs[0])):
                    inputs.shared = False
                    inputs.args *= j
                    inputs.kwargs *= j
                if not inputs.args or not inputs.shared:
                    inputs.args.append(rest)
                    inputs.kwargs.append(kwargs)
    finally:
        handle.remove()
    return hidden, inputs, spilled


def _hidden_store(shape, dtype, budget, spill_dir):
    """A tensor for every sample's hidden states: in memory, or a memory-mapped file past ``budget`` bytes."""
    import torch

    nbytes = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
    if budget is None or nbytes <= budget or dtype == torch.bfloat16:
        return torch.empty(shape, dtype=dtype), None
    spill_dir = Path(spill_dir or tempfile.gettempdir())
    spill_dir.mkdir(parents=True, exist_ok=True)
    f = tempfile.NamedTemporaryFile(dir=spill_dir, prefix="hidden-", suffix=".bin", delete=False)
    f.close()
    np_dtype = {torch.float32: np.float32, torch.float16: np.float16}[dtype]
    arr = np.memmap(f.name, dtype=np_dtype, mode="w+", shape=shape)
    return torch.from_numpy(arr), f.name


def _detach(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, tuple):
        return tuple(_detach(o) for o in obj)
    if isinstance(obj, list):
        return [_detach(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _detach(v) for k, v in obj.items()}
    return obj


def _same(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return a is b or bool(a == b)
    except Exception:  # noqa: BLE001 - objects without a usable ==
        return False


def _tail_needs_before(model, layers) -> bool:
    """True when a module after the layers still has a parameter on the meta device (a tied head)."""
    order = list(model.named_modules())
    at = next(i for i, (_, m) in enumerate(order) if m is layers)
    inside = {id(m) for m in layers.modules()}
    return any(p.device.type == "meta" for _, m in order[at + 1 :] if id(m) not in inside for p in m.parameters(recurse=False))


class _Replay:
    """Stands in for a decoder layer when computing logits: returns the outputs already computed."""

    def __init__(self, hidden, as_tuple: bool):
        self.hidden, self.as_tuple, self.span = hidden, as_tuple, (0, 1)

    def module(self, last: bool):
        import torch

        replay = self

        class Replay(torch.nn.Module):
            def forward(self, hidden_states, *args, **kwargs):
                s0, s1 = replay.span
                h = replay.hidden[s0:s1].to(hidden_states.device, hidden_states.dtype) if last else hidden_states
                return (h,) if replay.as_tuple else h

        return Replay()


def _logits(model, layers, loader, before, after, stores, input_ids, spans, device, as_tuple, on_logits=None):
    """The model's own forward over the computed layer outputs: final norm, head (and their hooks).

    Only the weights after the layers are loaded, and the model is fed zero ``inputs_embeds`` (the layers
    ignore their inputs here). A model whose embedding module works on the inputs itself (BERT adds position
    embeddings) fails that way; then the embeddings are read again and the token ids fed. ``stores``: the
    float stream's hidden states, then those of further streams; each gets the same tail. Returns the float
    stream's logits (None when ``on_logits`` takes every batch's outputs instead).
    """
    import torch

    hidden = stores[0]
    loader.load(loader.fetch_names(after))
    replay = _Replay(hidden, as_tuple)
    originals = list(layers)
    for i in range(len(layers)):
        layers[i] = replay.module(last=i == len(layers) - 1)

    def one(span: tuple[int, int], embeds: bool) -> list:
        replay.span = span
        ids = input_ids[span[0] : span[1]].to(device)
        outs = []
        for store in stores:
            replay.hidden = store
            if embeds:
                zeros = torch.zeros(*ids.shape, hidden.shape[-1], dtype=hidden.dtype, device=device)
                r = model(inputs_embeds=zeros, use_cache=False)
            else:
                r = model(input_ids=ids, use_cache=False)
            outs.append((r.logits if hasattr(r, "logits") else r.last_hidden_state).to("cpu"))
        return outs

    out = []

    def take(span, outs) -> None:
        if on_logits is not None:
            on_logits(span, outs)
        else:
            out.append(outs[0])

    loaded = list(after)
    try:
        with torch.no_grad():
            embeds = not _tail_needs_before(model, layers)
            if not embeds:  # a head tied to the embeddings: the table is read again
                loader.load(loader.fetch_names(before))
                loaded += before
                if hasattr(model, "tie_weights"):
                    model.tie_weights()
                take(spans[0], one(spans[0], embeds))
            else:
                try:
                    first = one(spans[0], embeds)
                except (RuntimeError, NotImplementedError, TypeError, ValueError, AttributeError):
                    embeds = False
                    loader.load(loader.fetch_names(before))
                    loaded += before
                    first = one(spans[0], embeds)
                take(spans[0], first)
            for span in spans[1:]:
                take(span, one(span, embeds))
    finally:
        for i, m in enumerate(originals):
            layers[i] = m
        loader.free_names(loaded)
    return torch.cat(out) if out else None
