"""Embedding matrices: per-token L2-norm statistics, the extreme tokens, decoded when a tokenizer is present."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from streamscope.analyses.registry import Analysis
from streamscope.io.tokenizer import TokenizerError, decoder

NORM_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
POSITIONAL = re.compile(r"position|wpe|token_type|embed_positions|patch_embed|visual|vision")  # rows are not tokens
TOP_K = 10


def embedding_norms(name: str, shape: tuple[int, ...], row_norms: np.ndarray, tokenizer: Path | None = None) -> dict:
    """Statistics of the per-row (per-token) L2 norms of one embedding matrix.

    Args:
        name: tensor name.
        shape: ``(vocab_size, embedding_dim)``.
        row_norms: the L2 norm of every row, float64.
        tokenizer: the vocabulary (see ``io.tokenizer.find``); when given, extreme rows are decoded to text.

    Returns:
        ``vocab_size, embedding_dim, norm_mean, norm_std, norm_min, norm_max, norm_percentiles`` and
        ``largest`` / ``smallest``: the ``TOP_K`` rows as ``{"id", "norm", "token"}``; when the vocabulary cannot
        be read, ``tokens`` says why and the rows keep their ids alone (``token`` None).
    """
    norms = np.asarray(row_norms, dtype=np.float64)
    order = np.argsort(norms, kind="stable")
    token_rows = tokenizer is not None and not POSITIONAL.search(name)
    decode, note = (lambda i: None), None
    if token_rows:
        try:
            decode = decoder(str(tokenizer))
        except TokenizerError as e:  # the statistics stand without text: token ids, and why
            note = f"not decoded: {e}"
    rows = lambda ids: [{"id": int(i), "norm": float(norms[i]), "token": decode(int(i))} for i in ids]  # noqa: E731
    return {
        "name": name,
        "shape": list(shape),
        "vocab_size": int(shape[0]),
        "embedding_dim": int(np.prod(shape[1:])),
        "norm_mean": float(norms.mean()),
        "norm_std": float(norms.std(ddof=1)) if norms.size > 1 else float("nan"),
        "norm_min": float(norms.min()),
        "norm_max": float(norms.max()),
        "norm_percentiles": {f"p{p}": float(v) for p, v in zip(NORM_PERCENTILES, np.percentile(norms, NORM_PERCENTILES))},
        "largest": rows(order[::-1][:TOP_K]),
        "smallest": rows(order[:TOP_K]),
        **({"tokens": note} if note else {}),
    }


def tensor_embedding(ctx, options) -> dict | None:
    """Row-norm statistics of an embedding or output matrix; the norms go to ``arrays.zarr`` as ``row_norms``."""
    if ctx.acc.row_sumsq is None:
        return None
    norms = np.sqrt(ctx.acc.row_sumsq)
    ctx.arrays["row_norms"] = norms
    return embedding_norms(ctx.info.name, ctx.info.shape, norms, ctx.tokenizer)


def model_embedding(ctx, options) -> dict:
    """Every embedding matrix's row-norm statistics, by tensor name."""
    return {n: r["embedding"] for n, r in ctx.records.items() if "embedding" in r}


ANALYSIS = Analysis(
    name="embedding",
    kind="tensor",
    help="per-token L2 norms of embedding and output matrices, extreme tokens decoded",
    selectable=False,
    row_norms_for=("embedding", "output"),
    histogram=False,
    writes=("row_norms",),
    table=False,  # per-token rows (the extreme tokens), read from tensors.json and model.json
    compute=tensor_embedding,
)

MODEL_ANALYSIS = Analysis(
    name="model_embedding",
    key="embedding",
    kind="model",
    help="the embedding matrices' row-norm statistics in model.json",
    selectable=False,
    compute=model_embedding,
)
