"""Process settings the command line chooses for the native libraries under torch: an opt-in, never set by
``import streamscope`` (a library leaves its host's environment alone).

Each is only a default: a value the user set is kept. They must be in the environment before torch starts its
OpenMP threads, allocates its first large tensor or makes its first MKL call, so the command line sets them before
it imports torch (``streamscope.__main__``); a program using the API may call ``tune`` first thing. The
measurements behind each are in ``benchmarks/README.md`` ("Why the code is the way it is").
"""

from __future__ import annotations

import os
from typing import MutableMapping

SETTINGS = {
    # torch's OpenMP threads spin for a while after every parallel region; on a machine with few cores they take
    # the cores from the native kernel's threads that run next. Sleeping at once costs nothing on the large
    # operations streamscope runs.
    "OMP_WAIT_POLICY": "PASSIVE",
    # Large fresh tensors on transparent huge pages (torch's allocator madvises them when this is set): filling a
    # fresh tensor is faster in 2 MiB pages, and the streamed forward loads every layer into fresh tensors.
    "THP_MEM_ALLOC_ENABLE": "1",
    # MKL's own memory manager keeps the buffers of every matrix product for reuse, memory a streamed forward
    # holds for nothing; the scans run no slower without it.
    "MKL_DISABLE_FAST_MM": "1",
}


def tune(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set ``SETTINGS`` in ``environ`` (``os.environ``) where they are not set; returns those it set.

    Example:
        >>> import streamscope.environment
        >>> streamscope.environment.tune({"OMP_WAIT_POLICY": "ACTIVE"})
        {'THP_MEM_ALLOC_ENABLE': '1', 'MKL_DISABLE_FAST_MM': '1'}
    """
    environ = os.environ if environ is None else environ
    added = {k: v for k, v in SETTINGS.items() if k not in environ}
    environ.update(added)
    return added
