"""Scan options: memory budget, device, analyses, with the parsing and checks the CLI and API share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from streamscope.analyses import ANALYSIS_ALIASES, DEFAULT_ANALYSES
from streamscope.analyses.spectral import METHODS as SPECTRAL_METHODS
from streamscope.kernels.quant import SCHEMES as QUANT_SCHEMES
from streamscope.errors import DeviceError, OptionError

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}  # fmt: skip
MIN_BUDGET = 16 << 20
#: Largest block, in working-precision elements: 64 MiB of float32 (PERF_NOTES: larger blocks gain nothing).
MAX_BLOCK_ELEMS = 16 << 20
#: Working bytes per block element: two raw buffers (read-ahead) of up to 8 bytes, the float32 block, |x|,
#: a centered copy, integer keys and flags.
BYTES_PER_ELEM = 2 * 8 + 4 + 4 + 4 + 4 + 1


def parse_bytes(text: str | int, what: str = "--memory-budget") -> int:
    """``"512MB"``, ``"1.5GiB"``, ``"64m"`` or an int -> bytes (binary units)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise OptionError(f"{what} {text!r} is not a size; use a number with an optional unit, e.g. 512MB or 2GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; naming an absent device raises ``DeviceError``."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: CUDA is not available in this torch build or on this machine; use --device cpu")
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError("--device mps: Apple's MPS backend is not available on this machine; use --device cpu")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise OptionError(f"--device must be auto, cpu, cuda or mps; got {name!r}")


@dataclass
class ScanOptions:
    """Everything that shapes a scan; ``fingerprint`` keys the resume cache."""

    analyses: tuple[str, ...] = DEFAULT_ANALYSES
    select: str | None = None
    memory_budget: int = 1 << 30
    device: str = "auto"
    histogram_bins: int = 256
    block_elems: int | None = None  # override the budget-derived block size (tests, tuning)
    spectral: str = "auto"  # auto | exact | gram | randomized | off
    rank: int = 32  # top singular values reported
    quant_schemes: tuple[str, ...] = QUANT_SCHEMES
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.analyses, str):
            self.analyses = tuple(a.strip() for a in self.analyses.split(",") if a.strip())
        unknown = [a for a in self.analyses if a not in ANALYSIS_ALIASES]
        if unknown:
            raise OptionError(f"unknown analysis {unknown[0]!r}; choose from {', '.join(sorted(set(ANALYSIS_ALIASES)))}")
        if isinstance(self.quant_schemes, str):
            self.quant_schemes = tuple(q.strip() for q in self.quant_schemes.split(",") if q.strip())
        bad = [q for q in self.quant_schemes if q not in QUANT_SCHEMES]
        if bad:
            raise OptionError(f"--quant-schemes: unknown scheme {bad[0]!r}; choose from {', '.join(QUANT_SCHEMES)}")
        if self.spectral not in SPECTRAL_METHODS:
            raise OptionError(f"--spectral must be one of {', '.join(SPECTRAL_METHODS)}; got {self.spectral!r}")
        if not 1 <= int(self.rank) <= 4096:
            raise OptionError(f"--rank must be between 1 and 4096; got {self.rank}")
        self.memory_budget = parse_bytes(self.memory_budget)
        if self.memory_budget < MIN_BUDGET:
            raise OptionError(f"--memory-budget must be at least {MIN_BUDGET >> 20}MB; got {self.memory_budget} bytes")

    @property
    def result_keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ANALYSIS_ALIASES[a] for a in self.analyses))

    @property
    def max_block_elems(self) -> int:
        """Block size in elements so that the working buffers stay within a third of the budget."""
        if self.block_elems:
            return self.block_elems
        return max(1 << 16, min(MAX_BLOCK_ELEMS, self.memory_budget // (3 * BYTES_PER_ELEM)))

    def analysis_params(self) -> dict:
        """What block analyses read: spectral method, rank, quantization schemes, budget, extras."""
        return {"spectral": self.spectral, "rank": self.rank, "quant_schemes": self.quant_schemes,
                "memory_budget": self.memory_budget, **self.extra}  # fmt: skip

    def fingerprint(self) -> str:
        return repr((self.result_keys, self.histogram_bins, self.spectral, self.rank, self.quant_schemes, sorted(self.extra.items())))
