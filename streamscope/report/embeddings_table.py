"""The terminal summary of ``streamscope embeddings``: one row per matrix (its short label, k, how it was chosen,
inertia, silhouette, the largest clusters), and a line for every matrix whose rows show no clear cluster structure
(full names in ``embeddings.json``)."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from streamscope.report.labels import plain, short_label


def fixed(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, ``-`` when missing; a value that rounds to zero prints as zero, never as
    ``-0.000`` (a sign the printed digits cannot show)."""
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def rule(c: dict) -> str:
    """How the matrix's k was chosen: ``knee``, ``given``, or ``none`` when the knee only cuts a cloud (no clear
    cluster structure; a line under the table says why)."""
    if c.get("structure") and not c["structure"]["clear"]:
        return "none"
    return "knee" if "knee" in c["k_rule"] else "given"


def print_embeddings(result: dict, console: Console) -> None:
    t = Table(title="Embedding clusters", box=box.SIMPLE_HEAD)
    t.add_column("matrix", overflow="fold", min_width=12)
    for column in ("k", "rule", "inertia", "silhouette"):
        t.add_column(column, no_wrap=True)
    t.add_column("largest clusters (size: nearest tokens)", min_width=20)
    for name, c in result["clusters"].items():
        chosen = next(e for e in c["elbow"] if e["k"] == c["k"])
        top = sorted(c["clusters"], key=lambda cl: -cl["size"])[:3]
        words = "; ".join(f"{cl['size']}: " + ", ".join(str(t["token"]) if t["token"] is not None else f"#{t['id']}" for t in cl["tokens"][:3]) for cl in top)
        t.add_row(plain(short_label(name)), str(c["k"]), rule(c), f"{chosen['inertia']:.4g}", fixed(chosen["silhouette"]), plain(words))
    console.print(t)
    for name, c in result["clusters"].items():
        s = c.get("structure")
        if s and not s["clear"]:
            console.print(f"{plain(name)}: no clear cluster structure: k-means at k={s['k']} keeps {s['inertia_share']:.0%} of "
                          f"the rows' spread, {s['reference_share']:.0%} on Gaussian rows of the same covariance; the "
                          f"{c['k']} clusters are pieces of one cloud, not groups.")  # fmt: skip
