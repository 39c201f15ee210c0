"""The quantized model's hidden-state stream beside the float one, and what the two streams' outputs differ by.

A ``QuantStream`` is handed to ``forward.run``: after the float samples have passed decoder layer i, its
Linears are fake-quantized in place (one at a time) as the recipe says, the stream's own hidden states run
through the layer, and the layer's output is compared with the float stream's over every element of every
sample (cosine, SQNR). Where several streams share a layer, the float weights are put back after each.
At the tail, ``Tail`` compares the next-token distributions of the two models at every position that has
a next token: KL(p_float || p_quant) in nats (mean and numpy's default p99), top-1 agreement and the
perplexity of each.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from streamscope.activation.sensitivity.hooks import set_weight, weight_matrix
from streamscope.activation.sensitivity.local import db
from streamscope.kernels.fakequant import applicable, fake_quantize

_ROWS = 1024  # token rows compared per step
_POSITIONS = 64  # positions whose next-token distributions are compared per step


def divergence(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Cosine and SQNR (dB) of ``b`` against ``a`` over all their elements, summed in float64 (``_ROWS`` token
    rows at a time, so the float64 copies stay small however long the samples)."""
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    ab = aa = bb = ee = 0.0
    for s in range(0, a.shape[0], _ROWS):
        x, y = a[s : s + _ROWS].double(), b[s : s + _ROWS].double()
        ab += float((x * y).sum())
        aa += float((x * x).sum())
        bb += float((y * y).sum())
        ee += float((x - y).square_().sum())
    cos = ab / math.sqrt(aa * bb) if aa > 0 and bb > 0 else float("nan")
    return {"cos": cos, "sqnr_db": db(aa, ee)}


class QuantStream:
    """One recipe's stream: ``hidden`` and ``reference`` (the float stream) are set by ``forward.run``."""

    def __init__(self, name: str, assignment: dict[str, str | None], modules: dict, prefix: str, restore: bool, capture=None):
        self.name, self.assignment, self.modules = name, assignment, modules
        self.prefix, self.restore, self.capture = prefix, restore, capture
        self.layers: list[dict] = []
        self.skipped: dict[str, str] = {}  # module -> why it stayed in float
        self._saved: dict[str, torch.Tensor] = {}

    def enter(self, i: int, layer) -> None:
        if self.capture is not None:
            self.capture.active = False
        head = f"{self.prefix}{i}."
        for name, scheme in self.assignment.items():
            if scheme is None or not name.startswith(head):
                continue
            module = self.modules[name]
            w = weight_matrix(module)
            why = applicable(scheme, tuple(w.shape))
            if why is not None:
                self.skipped[name] = why
                continue
            if self.restore:
                self._saved[name] = module.weight.detach().clone()
            set_weight(module, fake_quantize(w, scheme))
            del w

    def leave(self, i: int, layer) -> None:
        for name, w in self._saved.items():
            self.modules[name].weight.data.copy_(w)
        self._saved.clear()
        if self.capture is not None:
            self.capture.active = True
        self.layers.append(divergence(self.reference, self.hidden))


class Tail:
    """Next-token statistics of the float model against each quantized one, batch by batch."""

    def __init__(self, input_ids: torch.Tensor, n_streams: int, is_lm: bool):
        self.ids, self.is_lm = input_ids, is_lm
        self.kl = [[] for _ in range(n_streams)]
        self.agree = [0] * n_streams
        self.nll = [0.0] * (n_streams + 1)  # the float model's first
        self.positions = 0
        self.final = [[0.0, 0.0, 0.0, 0.0] for _ in range(n_streams)]  # encoders: Σab, Σaa, Σbb, Σ(a-b)²

    def __call__(self, span: tuple[int, int], outputs: list) -> None:
        ref = outputs[0].to(torch.float32)
        if not self.is_lm:
            for k, out in enumerate(outputs[1:]):
                x, y = ref.double(), out.to(torch.float64)
                for j, v in enumerate(((x * y).sum(), (x * x).sum(), (y * y).sum(), (x - y).square().sum())):
                    self.final[k][j] += float(v)
            return
        targets = self.ids[span[0] : span[1], 1:]
        for i in range(ref.shape[0]):  # a few positions at a time: the float64 distributions are vocabulary-wide
            for p0 in range(0, ref.shape[1] - 1, _POSITIONS):
                p1 = min(ref.shape[1] - 1, p0 + _POSITIONS)
                self._positions(ref[i, p0:p1], [out[i, p0:p1] for out in outputs[1:]], targets[i, p0:p1].unsqueeze(-1))

    def _positions(self, ref: torch.Tensor, outs: list, target: torch.Tensor) -> None:
        # float64: the KL of two close distributions is a small difference of log-probabilities of order 1-10
        lf = torch.log_softmax(ref.double(), dim=-1)
        pf = lf.exp()
        self.positions += target.shape[0]
        self.nll[0] += -float(lf.gather(-1, target).sum())
        top = lf.argmax(dim=-1)
        for k, out in enumerate(outs):
            lq = torch.log_softmax(out.double(), dim=-1)
            self.kl[k].append(torch.sum(pf * (lf - lq), dim=-1).numpy())
            self.agree[k] += int((lq.argmax(dim=-1) == top).sum())
            self.nll[k + 1] += -float(lq.gather(-1, target).sum())

    def result(self, k: int) -> dict:
        if not self.is_lm:
            ab, aa, bb, ee = self.final[k]
            return {"kl_mean": None, "kl_p99": None, "top1_agreement": None, "ppl_float": None, "ppl_quant": None,
                    "output": {"cos": ab / math.sqrt(aa * bb) if aa > 0 and bb > 0 else None, "sqnr_db": db(aa, ee)}}  # fmt: skip
        kl = np.concatenate(self.kl[k]) if self.kl[k] else np.zeros(0)
        n = self.positions
        return {"kl_mean": float(kl.mean()) if n else None, "kl_p99": float(np.quantile(kl, 0.99)) if n else None,
                "top1_agreement": self.agree[k] / n if n else None, "ppl_float": math.exp(self.nll[0] / n) if n else None,
                "ppl_quant": math.exp(self.nll[k + 1] / n) if n else None, "positions": n}  # fmt: skip
