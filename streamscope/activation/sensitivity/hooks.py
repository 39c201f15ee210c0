"""What every Linear of the decoder layer in memory receives, kept until the layer's samples have all passed.

Linears called with the same tensor (q, k and v; gate and up) form one *group* whose inputs are kept once:
either the inputs themselves (the cheaper choice for few tokens), or their Gram matrix ``XᵀX`` in float64
(cheaper once the tokens outnumber the input channels, and the only choice past the memory limit), from
which every scheme's output error follows exactly: ``Σ‖(W - Ŵ) x‖² = Σ (E G) ∘ E``. A group fed by a norm
of its layer (the Linears SmoothQuant smooths) also keeps its per-channel ``max |x|`` over every token and
the first inputs up to the memory limit, for the W8A8 simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def weight_matrix(module) -> torch.Tensor:
    """The (out, in) float32 weight of a Linear (GPT-2's Conv1D stores it transposed)."""
    w = module.weight
    return (w.t() if type(module).__name__ == "Conv1D" else w).detach().to(torch.float32)


def set_weight(module, w: torch.Tensor) -> None:
    """Write an (out, in) matrix into the module's weight in place, in the weight's dtype and layout."""
    target = module.weight.data
    target.copy_(w.t() if type(module).__name__ == "Conv1D" else w)


def is_norm(module) -> bool:
    name = type(module).__name__
    return name.endswith("Norm") or "LayerNorm" in name or "RMSNorm" in name


#: Rows of the Gram matrix computed per product: bands of about this many rows keep each product large enough
#: for the BLAS while the upper triangle alone halves the work (benchmarks/README.md).
GRAM_BAND = 512
#: Tokens summed in float32 before they go into the float64 Gram matrix.
FLUSH_TOKENS = 8192


@dataclass
class Group:
    """The inputs shared by the Linears called with one tensor."""

    modules: list[str]
    gram: torch.Tensor | None = None  # float64 XᵀX in Gram mode: its upper triangle (``gram32`` mirrors it)
    inputs: list = field(default_factory=list)  # (tokens, in) float32 batches, in input mode or for smoothing
    kept_tokens: int = 0
    tokens: int = 0
    norm: str | None = None  # the norm of the layer whose output this is
    amax: torch.Tensor | None = None  # per input channel max |x| over every token (norm-fed groups)
    _gram32: torch.Tensor | None = None
    _partial: torch.Tensor | None = None  # float32 sum of the batches since the last ``_flush``
    _partial_tokens: int = 0

    def add_gram(self, x: torch.Tensor) -> None:
        """Add ``xᵀx`` of a ``(tokens, in)`` float32 batch. Only the upper triangle is computed, a band of rows
        at a time, each summed in place into a float32 buffer (no temporary, half the products); the buffer goes
        into the float64 sum every ``FLUSH_TOKENS`` tokens, so that rounding does not grow with the tokens."""
        d = x.shape[1]
        if self._partial is None:
            self._partial = torch.zeros(d, d, dtype=torch.float32)
        edges = [d * i // max(1, d // GRAM_BAND) for i in range(max(1, d // GRAM_BAND) + 1)]
        for a0, a1 in zip(edges, edges[1:]):
            self._partial[a0:a1, a0:].addmm_(x[:, a0:a1].t(), x[:, a0:])
        self._partial_tokens += x.shape[0]
        if self._partial_tokens >= FLUSH_TOKENS:
            self._flush()

    def _flush(self) -> None:
        if self._partial is not None and self._partial_tokens:
            self.gram.add_(self._partial)
            self._partial.zero_()
            self._partial_tokens = 0

    def gram32(self) -> torch.Tensor:
        """The Gram matrix in float32, whole (mirrored from its upper triangle), made once for all the group's
        Linears and schemes."""
        if self._gram32 is None:
            self._flush()
            self._partial = None
            g = torch.triu(self.gram.to(torch.float32))  # mirrored in float32: no float64 d x d copies
            self._gram32 = g.add_(torch.triu(g, 1).t())
        return self._gram32


class Capture:
    """Hooks on the decoder layers, their Linears and norms; ``groups`` and ``yy`` (Σ y² per Linear) hold
    what the layer in memory received, ``reset`` clears them for the next layer."""

    def __init__(self, linears: dict, norms: dict, tokens: int, schemes: int, limit: int, smooth: bool):
        self.linears, self.norms = linears, norms
        self.tokens, self.schemes, self.limit, self.smooth = tokens, schemes, limit, smooth
        self.handles: list = []
        self.reset()

    def reset(self) -> None:
        self.groups: dict[str, Group] = {}
        self.member: dict[str, str] = {}  # module -> its group's key
        self.yy: dict[str, float] = {}
        self.call = 0
        self._seen: dict[tuple, str] = {}
        self._norm_out: dict[tuple, str] = {}
        self.kept_bytes = 0  # inputs kept only for smoothing
        self.planned = 0  # inputs kept by groups in input mode, counted at their first call

    def attach(self, layers) -> None:
        for layer in layers:
            self.handles.append(layer.register_forward_pre_hook(self._next_call))
        for name, m in self.linears.items():
            self.handles.append(m.register_forward_hook(self._linear(name)))
        for name, m in self.norms.items():
            self.handles.append(m.register_forward_hook(self._norm(name)))

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def _next_call(self, module, args) -> None:
        self.call += 1
        self._seen.clear()
        self._norm_out.clear()

    def _norm(self, name: str):
        def hook(module, args, out) -> None:
            if self.active and isinstance(out, torch.Tensor):
                self._norm_out[(out.untyped_storage().data_ptr(), out.numel())] = (name, out)

        return hook

    active = True  # off while the quantized streams run through the layer

    def _linear(self, name: str):
        def hook(module, args, out) -> None:
            if not self.active or not args or not isinstance(args[0], torch.Tensor):
                return
            x = args[0]
            y = out[0] if isinstance(out, tuple) else out
            flat = y.detach().to(torch.float32).reshape(-1)
            self.yy[name] = self.yy.get(name, 0.0) + float(torch.dot(flat, flat))
            key = (x.untyped_storage().data_ptr(), x.storage_offset(), tuple(x.shape))
            if key in self._seen:
                self.member[name] = self._seen[key][0]
                group = self.groups[self._seen[key][0]]
                if name not in group.modules:
                    group.modules.append(name)
                return
            gkey = self.member.get(name, name)
            self._seen[key] = (gkey, x)  # x held: a freed tensor's address could come back for another input
            self.member[name] = gkey
            group = self.groups.get(gkey)
            if group is None:
                group = self.groups[gkey] = Group([name])
            norm = self._norm_out.get((x.untyped_storage().data_ptr(), x.numel()))
            if norm is not None:
                group.norm = norm[0]
            self._take(group, x.detach().reshape(-1, x.shape[-1]).to(torch.float32), module)

        return hook

    def _gram_mode(self, rows: int, cols: int) -> bool:
        """Gram when its cost (once ``T d² / 2``, its upper triangle, then ``d² d_out`` per scheme) undercuts the
        inputs' (``T d d_out`` per scheme), or when keeping the inputs would pass the memory limit."""
        if not self.schemes:  # smoothing alone needs the inputs themselves
            return self.planned + self.tokens * cols * 4 > self.limit
        cheaper = cols / (2 * self.schemes * rows) + cols / max(self.tokens, 1) < 1
        return cheaper or self.planned + self.tokens * cols * 4 > self.limit

    def _take(self, group: Group, x: torch.Tensor, module) -> None:
        group.tokens += x.shape[0]
        if group.gram is None and not group.inputs:  # the group's first call decides its mode
            if self._gram_mode(weight_matrix(module).shape[0], x.shape[1]):
                group.gram = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
            else:
                self.planned += self.tokens * x.shape[1] * 4
        if group.gram is not None:
            group.add_gram(x)
            # smoothing needs the inputs themselves: the first ones, as many as the memory limit leaves room for
            if self.smooth and group.norm is not None and self.planned + self.kept_bytes + x.numel() * 4 <= self.limit:
                self.kept_bytes += x.numel() * 4
                group.inputs.append(x.clone())
                group.kept_tokens += x.shape[0]
        else:
            group.inputs.append(x.clone())
            group.kept_tokens += x.shape[0]
        if self.smooth and group.norm is not None:
            m = x.abs().amax(dim=0)
            group.amax = m if group.amax is None else torch.maximum(group.amax, m)
