"""What a probe is: the shape every activation statistic takes (see ``probes/__init__.py`` for the registry).

A probe watches some modules of the model. For each watched module it keeps a *state* that

- ``update(call)``: takes one call of the module (a batch of samples: ``call.x_in``, ``call.x_out``, the whole
  ``call.output``, the ``call.module``);
- ``merge(other)``: absorbs another state of the same module (another worker's samples, a resumed run's saved
  layers), so a split run gives what one run gives;
- ``dump()`` / the probe's ``restore(vis, data)``: to and from a dict of numpy arrays (the per-layer checkpoint);
- ``reduce()``: its result once every sample has passed (the state's counters are then freed).

The probe itself says which modules it watches, how the reduced results of all its modules become its part of
``activations.json``, its rows of ``activations.csv``, its arrays and files, and its figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol


class State(Protocol):
    def update(self, call: "Call") -> None: ...
    def merge(self, other: "State") -> "State": ...
    def dump(self) -> dict: ...
    def reduce(self) -> Any: ...


@dataclass
class Call:
    """One call of a watched module: ``batch`` samples starting at sample ``sample``."""

    x_in: Any  # the first tensor argument (None when the module got none)
    x_out: Any  # the output tensor (first of a tuple; ``last_hidden_state`` of a model output)
    sample: int
    batch: int
    output: Any = None  # the module's whole output (an MoE router's tuple holds the experts it chose)
    module: Any = None  # the module itself (its attributes: a router's top-k, experts, scoring)

    def samples(self, x) -> list[tuple[int, Any]]:
        """``(sample index, that sample's part of x)`` for each sample of the call."""
        if self.batch > 1 and x.dim() >= 2 and x.shape[0] == self.batch:
            return [(self.sample + b, x[b]) for b in range(self.batch)]
        return [(self.sample, x)]


@dataclass
class Watch:
    """What probes choose their modules from: the module names in model order, the modules, the decoder layers."""

    names: list[str]
    modules: dict
    layers_name: str  # e.g. model.layers
    chosen: list[str] | None = None  # layer_selection.patterns: every selection is within these

    @property
    def layer_pattern(self) -> str:
        """The decoder layers themselves (their outputs are the hidden states)."""
        return rf"^{re.escape(self.layers_name)}\.\d+$"

    def matching(self, patterns: list[str], within_selection: bool = True) -> list[str]:
        chosen = self.chosen if within_selection else None
        return [n for n in self.names if any(re.search(p, n) for p in patterns) and (not chosen or any(re.search(p, n) for p in chosen))]

    def linear(self) -> list[str]:
        """Every Linear (and GPT-2's Conv1D) module."""
        import torch

        return [n for n in self.names if isinstance(self.modules[n], torch.nn.Linear) or type(self.modules[n]).__name__ == "Conv1D"]

    def in_layers(self, names: list[str]) -> list[str]:
        prefix = self.layers_name + "."
        return [n for n in names if n.startswith(prefix) and n.count(".") > prefix.count(".")]


@dataclass
class Run:
    """What a probe's record and exports may read about the run."""

    out: Path
    input_ids: Any  # (num_samples, seq_len) int64
    decode: Callable[[int], str | None] | None  # token id -> text, when the checkpoint has a vocabulary
    vis: dict  # the config's visualization section
    n_layers: int
    model_type: str
    facts: dict = field(default_factory=dict)  # the run record (source, num_samples, seq_len, ...)
    watched: dict = field(default_factory=dict)  # probe name -> its module names


@dataclass(frozen=True)
class Probe:
    """One activation statistic. Every callable but ``new``/``restore``/``watches`` is optional.

    Attributes:
        name: the probe's name (its key in ``activations.json`` unless ``key`` says otherwise).
        help: one line for ``--help`` and the docs.
        watches: ``(watch, vis) -> module names`` it keeps a state for.
        new: ``(vis, module name, scratch) -> State``; ``scratch``: a folder of its own under the output
            directory, for a state too large to hold (removed when the run's files are written).
        restore: ``(vis, dumped dict) -> State``.
        section: its subsection of ``visualization`` in the config (the seed's key names); ``options``: its keys
            there with their defaults; ``enabled``: the ``visualization.enabled`` switches it owns, with defaults.
        active: ``vis -> bool``: whether it runs (default: always).
        check: ``(vis, fail) -> None``: calls ``fail(key, why)`` (``key`` in full, e.g.
            ``visualization.outlier.threshold``) for a bad value of its options.
        record: ``(reduced {module: result}, run) -> value`` of ``activations.json[key]``.
        table: ``(reduced, run) -> rows`` for ``activations.csv``: dicts with ``module`` and ``direction`` and
            the probe's columns (rows of all probes with the same module and direction are joined).
        arrays: ``(zarr group, reduced, run) -> None``: its arrays, under ``arrays.zarr/activations``.
        files: ``(reduced, run) -> {file name: None when written, else why not}``.
        weights: whether its states also get ``state.weights(module)`` while a layer's weights are loaded.
        figures: ``((file, title, draw(results) -> Figure | None), ...)``: shown in the report's activations section.
    """

    name: str
    help: str
    watches: Callable
    new: Callable
    restore: Callable
    key: str | None = None
    section: str | None = None
    options: dict = field(default_factory=dict)
    enabled: dict = field(default_factory=dict)
    active: Callable[[dict], bool] = lambda vis: True
    check: Callable[[dict, Callable], None] | None = None
    record: Callable | None = None
    table: Callable | None = None
    arrays: Callable | None = None
    files: Callable | None = None
    weights: bool = False
    figures: tuple = ()

    @property
    def json_key(self) -> str:
        return self.key or self.name
