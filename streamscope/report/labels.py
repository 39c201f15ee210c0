"""Short, meaningful tensor labels for figures: ``L9.attn.q_proj``, ``h9.attn.c_proj``, ``V3.mlp.fc1``; and
``plain``, the form of a name or a token that a rich console prints as written."""

from __future__ import annotations

import re

from streamscope.text import plain  # noqa: F401 - the report's printers take it from here

_LAYER = re.compile(r"(?:^|\.)(h|layers?|blocks?|block|blk)\.(\d+)\.")  # blk: GGUF's llama.cpp names
_TRAIL = re.compile(r"\.(weight|bias)$")
_RENAMES = (("self_attn.", "attn."), ("attention.self.", "attn."), ("attention.", "attn."), ("self_attention.", "attn."))


def short_label(name: str, tower: str | None = None) -> str:
    """Layer index with a prefix (``h`` for GPT-2's ``h.N``, ``V`` for a vision tower, ``L`` otherwise) and the
    last parts of the module path; names outside the layer stack keep their last two parts."""
    bias = name.endswith(".bias")
    m = _LAYER.search(name)
    if not m:
        parts = _TRAIL.sub("", name).split(".")
        return ".".join(parts[-2:]) + (".b" if bias else "")
    prefix = "V" if tower == "vision" or ".visual." in name or "vision" in name else ("h" if m.group(1) == "h" else "L")
    rest = _TRAIL.sub("", name[m.end():])
    for a, b in _RENAMES:
        rest = rest.replace(a, b)
    parts = rest.split(".")
    return f"{prefix}{m.group(2)}." + ".".join(parts[-3:]) + (".b" if bias else "")


def table_labels(names: list[str]) -> list[str]:
    """``short_label`` of each name, for a table's rows; names whose labels would coincide keep their full name,
    so that no two rows read alike."""
    labels = [short_label(n) for n in names]
    seen: dict[str, int] = {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
    return [n if seen[label] > 1 and names.count(n) == 1 else label for n, label in zip(names, labels)]


def tick_step(n: int, most: int = 60) -> int:
    """Label every ``step``-th of ``n`` ticks so that at most ``most`` are shown."""
    return max(1, -(-n // most))
