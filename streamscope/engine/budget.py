"""One account of the memory budget: how much goes to block buffers, how much to analyses that hold memory.

``--memory-budget`` is a promise about working memory (what the interpreter and libraries take at start-up
comes on top). It is split once, here:

- block buffers take at most a third: each block element costs ``BYTES_PER_ELEM`` (two raw read-ahead
  buffers of up to 8 bytes, the float32 block, one scratch buffer that holds integer keys, |x| and a centred
  copy in turn, flags), and the
  quantization scratch and a second-pass buffer fit in the second third;
- analyses that hold memory across blocks (the exact spectrum's gathered matrix, the Gram matrix, the
  randomized sketches) share the last third, ``analysis_bytes``, and choose a cheaper method when theirs
  would not fit.

With several workers (``--scheduler``), each worker gets ``share(n)``: its part of the budget, not the whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamscope.errors import OptionError
from streamscope.units import parse_bytes

MIN_BUDGET = 16 << 20
#: Largest block, in working-precision elements: 64 MiB of float32 (PERF_NOTES: larger blocks gain nothing).
MAX_BLOCK_ELEMS = 16 << 20
BYTES_PER_ELEM = 2 * 8 + 4 + 4 + 1
MIN_BLOCK_ELEMS = 1 << 16


@dataclass(frozen=True)
class MemoryBudget:
    total: int
    block_override: int | None = None  # a fixed block size in elements (tests, tuning)

    @classmethod
    def parse(cls, value: str | int, block_elems: int | None = None) -> "MemoryBudget":
        total = parse_bytes(value)
        if total < MIN_BUDGET:
            raise OptionError(f"--memory-budget must be at least {MIN_BUDGET >> 20}MB; got {total} bytes")
        return cls(total, block_elems)

    @property
    def block_elems(self) -> int:
        """Block size in elements so that the block buffers stay within a third of the budget."""
        if self.block_override:
            return self.block_override
        return max(MIN_BLOCK_ELEMS, min(MAX_BLOCK_ELEMS, self.total // (3 * BYTES_PER_ELEM)))

    @property
    def analysis_bytes(self) -> int:
        """What analyses may hold at once beyond the block buffers."""
        return self.total // 3

    def share(self, workers: int) -> "MemoryBudget":
        """Each of ``workers`` workers' part of the budget.

        Raises:
            OptionError: when a part would fall under the minimum budget.
        """
        workers = max(1, int(workers))
        part = self.total // workers
        if part < MIN_BUDGET:
            raise OptionError(
                f"--memory-budget {self.total >> 20}MB split over {workers} workers leaves {part >> 20}MB each, under "
                f"the {MIN_BUDGET >> 20}MB minimum; raise the budget or use fewer workers"
            )
        return MemoryBudget(part, self.block_override)

    def halves(self) -> "MemoryBudget":
        """The budget of one side when two tensors stream side by side (``compare --weights``)."""
        return MemoryBudget(max(MIN_BUDGET, self.total // 2), self.block_override and max(1, self.block_override // 2))
