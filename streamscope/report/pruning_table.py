"""The pruning lines of ``compare --importance``: the removed layers against the measured importance."""

from __future__ import annotations

from rich.console import Console

from streamscope.report.labels import plain


def _layers(layers: list[int]) -> str:
    if not layers:
        return "none"
    if len(layers) > 1 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"L{layers[0]}-L{layers[-1]}"
    return ", ".join(f"L{i}" for i in layers)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def lines(view: dict) -> list[str]:
    removed, n = view["removed"], len(view["removed"])
    out = [f"pruning: removed {', '.join(f'L{i}' for i in removed) or 'no layer'} ({n} of {view['n_layers']} decoder layers)"]
    if not n:
        return out
    ranks = ", ".join(f"L{i} {_ordinal(view['block_influence_rank'][str(i)])}" for i in removed if view["block_influence_rank"].get(str(i)))
    out.append(f"  block influence rank (1st = least influential): {ranks}; the {n} least influential: "
               f"{_layers(view['least_influential'])} ({view['overlap_with_least_influential']} of them removed)")  # fmt: skip
    best = view.get("best_block")
    if best:
        own = view.get("removed_block_distance")
        mine = f"the removed block's {own:.4f}" if own is not None else "the removed layers are not one block"
        out.append(f"  the importance's best block of {n}: {_layers(best['layers'])} (angular distance {best['distance']:.4f}); {mine}")
    return out


def print_pruning(view: dict, console: Console) -> None:
    for line in lines(view):
        console.print(plain(line), highlight=False)
