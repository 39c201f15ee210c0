"""Scan options: memory budget, device, reader, analyses and their typed options, checked once.

``EngineOptions`` is the one table of the engine's own options (default, help line, command-line spelling; see
``optionspec``): the CLI builds ``--memory-budget``, ``--device`` and the rest from it, and the API's keyword
defaults are its values. ``ScanOptions.build`` is what the API and the CLI call: engine options by name, every
other keyword goes to the analysis that declares it (see ``analyses.registry``). ``fingerprint`` keys the resume
cache and is made from the registry, so no analysis option can be left out of it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from streamscope.analyses import REGISTRY, Analysis
from streamscope.engine.budget import MemoryBudget
from streamscope.errors import OptionError
from streamscope.io.tensor import READER_MODES
from streamscope.kernels.device import DEFAULT_DEVICE, DEVICES, resolve_device  # noqa: F401  (the engine's options name them)
from streamscope.optionspec import opt


@dataclass(frozen=True)
class EngineOptions:
    """The options of every command that streams a checkpoint, declared once (``ENGINE`` holds the defaults)."""

    select: str | None = opt(None, "Regex: only tensors whose name matches.", metavar="REGEX", short="-s", shown="every tensor")
    memory_budget: str = opt("1GB", "Working-memory bound, e.g. 512MB, 2GB.", metavar="SIZE", short="-m")
    device: str = opt(DEFAULT_DEVICE, f"{', '.join(DEVICES[:-1])} or {DEVICES[-1]}.", metavar="DEVICE")
    reader: str = opt("auto", "auto (mmap on CPU, pinned pread on GPUs), mmap or pread.", metavar="READER")
    native: bool = opt(True, "Use the C block kernel when built (same results).")
    scheduler: str | None = opt(None, "dask.distributed scheduler address, or 'local'.", metavar="ADDRESS", shown="none: this process")
    workers: int | None = opt(None, "Worker processes for --scheduler local.", metavar="N", shown="2")
    resume: bool = opt(True, "Reuse finished tensors of an interrupted run.")


ENGINE = EngineOptions()
#: keywords of ``scan()`` that no analysis may declare: the engine's, and the API's own
REGISTRY.reserve({f.name for f in dataclasses.fields(EngineOptions)} | {"analyses", "block_elems", "progress", "out", "revision"})


@dataclass
class ScanOptions:
    """Everything that shapes a scan.

    ``analyses`` are registered names (``REGISTRY.resolve`` turns what users type into them);
    ``analysis_options`` maps an analysis name to its options dataclass. ``reader``: ``auto`` (a memory map
    on CPU, pinned ``pread`` buffers on GPUs), ``mmap`` or ``pread``. ``native``: use the C block kernel when
    it was built (the numpy/torch path gives identical results).
    """

    analyses: tuple[str, ...] = field(default_factory=REGISTRY.defaults)
    select: str | None = None
    memory: MemoryBudget = field(default_factory=lambda: MemoryBudget.parse(ENGINE.memory_budget))
    device: str = ENGINE.device
    reader: str = ENGINE.reader
    native: bool = ENGINE.native
    analysis_options: dict[str, Any] = field(default_factory=lambda: REGISTRY.build_options({}))

    @classmethod
    def build(cls, analyses=None, *, select: str | None = None, memory_budget: int | str = ENGINE.memory_budget,
              device: str = ENGINE.device, reader: str = ENGINE.reader, native: bool = ENGINE.native,
              block_elems: int | None = None, **analysis_options) -> "ScanOptions":  # fmt: skip
        """Check and gather every option; unknown keywords raise ``OptionError`` naming the known ones.

        ``block_elems`` fixes the block size in elements, for tests and tuning; it is no option of the API or CLI.
        """
        if reader not in READER_MODES:
            raise OptionError(f"--reader must be one of {', '.join(READER_MODES)}; got {reader!r}")
        if (device or ENGINE.device).lower().split(":")[0] not in DEVICES:
            raise OptionError(f"--device must be one of {', '.join(DEVICES)}; got {device!r}")
        return cls(
            analyses=REGISTRY.resolve(analyses),
            select=select,
            memory=MemoryBudget.parse(memory_budget, block_elems),
            device=device or ENGINE.device,
            reader=reader,
            native=native,
            analysis_options=REGISTRY.build_options(analysis_options),
        )

    def active(self) -> list[Analysis]:
        """The analyses this scan runs (selected ones and those that run on every scan), in registry order."""
        return REGISTRY.active(self.analyses)

    def options_for(self, analysis: Analysis) -> Any:
        return self.analysis_options.get(analysis.name)

    def fingerprint(self) -> str:
        """What decides whether a stored result can be reused: active analyses, all their options, and the memory
        budget and block size (the budget picks methods, e.g. the spectrum's ``gram`` or ``randomized``, and the
        block size the order of sums): a run resumed under another ``--memory-budget`` computes every tensor again.
        """
        parts: list = [("memory", self.memory.total, self.memory.block_override)]
        for a in self.active():
            opts = self.options_for(a)
            parts.append((a.name, sorted(dataclasses.asdict(opts).items()) if opts is not None else None))
        return repr(parts)

    def summary(self) -> dict:
        """The options as ``model.json["options"]`` records them."""
        out: dict[str, Any] = {"analyses": list(self.analyses), "select": self.select, "memory_budget": self.memory.total,
                               "device": self.device, "reader": self.reader}  # fmt: skip
        for a in self.active():
            opts = self.options_for(a)
            if opts is not None:
                out.update(dataclasses.asdict(opts))
        return out
