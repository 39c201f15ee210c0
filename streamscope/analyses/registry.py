"""One registry for every analysis: per block, per tensor, per model.

An analysis is an ``Analysis`` entry: its name (the key it writes in ``tensors.json`` or ``model.json``), its
kind, a help line, and a typed options dataclass whose fields are the keyword options of ``scan()`` and whose
defaults live there alone. The CLI's ``--analyses`` help, ``all`` and the resume fingerprint are all derived
from the registry, so a new analysis is one file plus one ``register(...)`` line in ``analyses/__init__.py``.

Kinds and what the engine calls (``ctx`` is the engine's ``TensorContext`` or ``ModelContext``):

- ``block``: sees every block of the tensor's single pass. ``start(ctx, options) -> state`` (``ctx.info``,
  ``ctx.memory``: what the budget leaves to analyses, ``ctx.device``, ``ctx.native``: whether the C kernels may
  be used, ``ctx.buffer(key, n, dtype)``: ``n`` values on the device, reused from tensor to tensor under ``key``);
  ``update(state, x, block, scratch)`` folds a ``(rows, cols)`` float block in (``scratch(key, n)`` is a reused
  float32 buffer); with ``stored=True`` it is called as ``update(state, x, block, scratch, stored=values)``
  with the block as stored too (a typed view of its bytes, or the decoded float32 of a quantized format);
  ``finish(state, ctx) -> dict | None``. ``ctx.row_blocks()`` streams the tensor again where
  a method needs more passes (``ctx.column_slabs()``: a matrix's column slabs).
- ``tensor``: runs once the pass is over, from ``ctx.acc`` (the statistics accumulator), ``ctx.record`` (what
  the analyses registered before it wrote) and ``ctx.arrays`` (arrays for ``arrays.zarr``):
  ``compute(ctx, options) -> dict | None``.
- ``model``: runs once every tensor is done, from ``ctx.records`` and ``ctx.index``:
  ``compute(ctx, options) -> dict | None``.

An analysis uses these fields and methods of ``ctx`` alone, never the engine's objects behind them.

Analyses with ``selectable=False`` run on every scan (histograms, embedding norms, health grades, norm
layers; the value histograms only when the pass keeps one, see ``histogram`` below); the others run when named
in ``--analyses`` (or by default, with ``default=True``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from streamscope.errors import OptionError

KINDS = ("block", "tensor", "model")


@dataclass(frozen=True)
class Analysis:
    name: str
    kind: str
    help: str
    aliases: tuple[str, ...] = ()
    options: type | None = None
    default: bool = False
    selectable: bool = True
    key: str = ""  # where the result is stored; the name unless set
    #: block types whose per-row sums of squares this analysis reads (``ctx.acc.row_sumsq``)
    row_norms_for: tuple[str, ...] = ()
    #: reads the per-row and per-column |w| maxima of matrices (``ctx.acc.row_absmax``, ``col_absmax``); the
    #: statistics pass computes them only when an active analysis does (a quarter of the pattern scan's time)
    row_maxima: bool = False
    #: reads the statistics pass's value histogram or what comes from it (``ctx.acc``: mean, var, min, max,
    #: zeros, quantiles, ``abs_below``); False when it reads only ``nan``, ``inf``, ``finite`` and ``sumsq`` of
    #: ``ctx.acc.summary()`` and ``row_sumsq``, or nothing. Scans of bfloat16 tensors whose block and tensor
    #: analyses all say False skip the histogram, a pass of its own over the block (benchmarks/README.md).
    histogram: bool = True
    writes: tuple[str, ...] = ()  # arrays it adds to ``arrays.zarr`` (documentation and the developer guide)
    stored: bool = False  # ``update`` also receives the block as stored (``stored=``)
    #: whether ``update`` needs the float block ``x``; a callable of the tensor's state may say no (``x`` is then
    #: None), so that a tensor whose analyses all read the stored values skips the conversion
    float_blocks: bool | Callable[[Any], bool] = True
    #: per-tensor work bound by computation (matrix products, eigensolvers, quantizer round trips): runs of small
    #: tensors then go side by side, one per core (``engine.executors.run_local``). Light analyses lose from it:
    #: their passes are bound by memory, not by computation (benchmarks/README.md).
    compute_bound: bool = False
    table: bool = True  # its per-tensor record becomes ``section.field`` columns of tensors.csv; False: tensors.json only
    start: Callable[..., Any] | None = None
    update: Callable[..., None] | None = None
    finish: Callable[..., dict | None] | None = None
    compute: Callable[..., dict | None] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"analysis {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        needed = ("start", "update", "finish") if self.kind == "block" else ("compute",)
        missing = [f for f in needed if getattr(self, f) is None]
        if missing:
            raise ValueError(f"analysis {self.name!r} of kind {self.kind!r} needs {', '.join(missing)}")
        if self.options is not None and not dataclasses.is_dataclass(self.options):
            raise ValueError(f"analysis {self.name!r}: options must be a dataclass")
        if not self.key:
            object.__setattr__(self, "key", self.name)

    @property
    def label(self) -> str:
        """The short name users type (the first alias), e.g. ``basic`` for ``basic_stats``."""
        return self.aliases[0] if self.aliases else self.name

    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.options)) if self.options else ()


@dataclass
class Registry:
    analyses: dict[str, Analysis] = field(default_factory=dict)
    #: keyword options of ``scan()`` that are not an analysis's (the engine's, ``reserve``)
    reserved: set[str] = field(default_factory=set)

    def register(self, analysis: Analysis) -> Analysis:
        """Add an analysis; names, aliases and option names must be new."""
        taken = {a: n for n, an in self.analyses.items() for a in (n, *an.aliases)}
        for alias in (analysis.name, *analysis.aliases):
            if alias in taken:
                raise ValueError(f"analysis name {alias!r} is taken by {taken[alias]!r}")
        owners = self.option_owners()
        for opt in analysis.option_names():
            if opt in owners or opt in self.reserved:
                raise ValueError(f"analysis {analysis.name!r}: option {opt!r} is taken by {owners.get(opt, 'the engine')!r}")
        self.analyses[analysis.name] = analysis
        return analysis

    def reserve(self, names: Iterable[str]) -> None:
        """Keep ``names`` (the engine's keyword options) from every analysis, registered or to come."""
        taken = set(names) & set(self.option_owners())
        if taken:
            raise ValueError(f"option {sorted(taken)[0]!r} of analysis {self.option_owners()[sorted(taken)[0]]!r} is the engine's")
        self.reserved.update(names)

    def unregister(self, name: str) -> None:
        self.analyses.pop(name, None)

    def __getitem__(self, name: str) -> Analysis:
        return self.analyses[name]

    def of_kind(self, *kinds: str) -> list[Analysis]:
        return [a for a in self.analyses.values() if a.kind in kinds]

    def selectable(self) -> list[Analysis]:
        return [a for a in self.analyses.values() if a.selectable]

    def defaults(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.selectable() if a.default)

    def all(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.selectable())

    def option_specs(self) -> list:
        """Every analysis option as declared (``optionspec.Spec``), in registry order: what the CLI's flags are made of."""
        from streamscope.optionspec import specs

        return [s for a in self.analyses.values() if a.options is not None for s in specs(a.options)]

    def option_owners(self) -> dict[str, str]:
        return {opt: a.name for a in self.analyses.values() for opt in a.option_names()}

    def resolve(self, names: str | Iterable[str] | None) -> tuple[str, ...]:
        """What users typed (names, aliases, ``all``, comma-separated) -> registered names, in registry order.

        Raises:
            OptionError: an unknown name, with the known ones.
        """
        if names is None:
            return self.defaults()
        if isinstance(names, str):
            names = names.split(",")
        lookup = {alias: a.name for a in self.selectable() for alias in (a.name, *a.aliases)}
        chosen: set[str] = set()
        for raw in names:
            n = raw.strip()
            if not n:
                continue
            if n == "all":
                chosen.update(self.all())
            elif n in lookup:
                chosen.add(lookup[n])
            else:
                raise OptionError(f"unknown analysis {n!r}; choose from {', '.join(self.all())} or all")
        return tuple(a for a in self.all() if a in chosen)

    def active(self, selected: Iterable[str]) -> list[Analysis]:
        """The analyses a scan runs: the selected ones and every non-selectable one, in registry order."""
        selected = set(selected)
        return [a for a in self.analyses.values() if a.name in selected or not a.selectable]

    def build_options(self, values: dict[str, Any]) -> dict[str, Any]:
        """``{analysis name: options instance}`` for every analysis with options, from keyword values.

        Raises:
            OptionError: a keyword that no analysis declares.
        """
        owners = self.option_owners()
        unknown = [k for k in values if k not in owners]
        if unknown:
            raise OptionError(f"unknown option {unknown[0]!r}; analysis options are {', '.join(sorted(owners))}")
        out = {}
        for a in self.analyses.values():
            if a.options is not None:
                out[a.name] = a.options(**{k: v for k, v in values.items() if owners[k] == a.name})
        return out

    def help_text(self) -> str:
        """The ``--analyses`` help: every selectable analysis with its help line, defaults marked."""
        parts = [f"{a.label}{' (default)' if a.default else ''}: {a.help}" for a in self.selectable()]
        return "Comma-separated, or all. " + "; ".join(parts) + "."

