"""streamscope: streaming, out-of-core analysis of large neural-network checkpoints.

Example:
    >>> import streamscope
    >>> ckpt = streamscope.open("model.safetensors")  # doctest: +SKIP
    >>> result = streamscope.scan("model.safetensors", out="results", memory_budget="512MB")  # doctest: +SKIP

The API is imported on first use, so ``import streamscope`` (and the command line's ``--help``) stays fast.
"""

import os as _os

from streamscope.errors import CheckpointError, DeviceError, HeaderError, OptionError, StreamscopeError

# torch's OpenMP threads spin for a while after every parallel region; on a machine with few cores they take
# the cores from the native kernel's threads that run next (measured here: the quantization kernel 0.94 s ->
# 0.61 s over 1.2 GB). Sleeping at once instead costs nothing on the large operations streamscope runs. Only a
# default: it takes effect when torch's OpenMP starts after this import, and a value already set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Large fresh tensors on transparent huge pages (torch's allocator madvises them when this is set): a fresh
# 200 MB tensor filled took 0.05-0.35 s here in 4 KiB pages, 0.015-0.03 s in 2 MiB pages, and the streamed
# forward loads every layer into fresh tensors (16 x 32 tokens through 2.2 GB: 16-20 s -> 13-15 s, and
# 90 MB less peak RSS). Only a default, read when torch first allocates a large tensor; a set value is kept.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
# MKL's own memory manager keeps the buffers of every matrix product for reuse: 12-17 MiB held through a
# streamed forward (peak RSS 667-677 -> 657-660 MiB on the 2.19 GB activation benchmark, 4 x 256 tokens), and
# the spectral bench scan ran no slower without it (median of 5: 2.80 s vs 2.86 s). Read at MKL's first call.
_os.environ.setdefault("MKL_DISABLE_FAST_MM", "1")

__version__ = "0.1.0"

_API = ("Checkpoint", "Results", "ScanResult", "Tensor", "open", "scan", "embeddings", "activations", "sensitivity", "build_report", "params", "params_frame", "compare", "compare_frame")

__all__ = [*_API, "CheckpointError", "DeviceError", "HeaderError", "OptionError", "StreamscopeError"]


def __getattr__(name: str):
    if name in _API:
        from streamscope import api

        return getattr(api, name)
    raise AttributeError(f"module 'streamscope' has no attribute {name!r}")
