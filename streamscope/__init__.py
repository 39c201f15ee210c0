"""streamscope: streaming, out-of-core analysis of large neural-network checkpoints.

Example:
    >>> import streamscope
    >>> ckpt = streamscope.open("model.safetensors")  # doctest: +SKIP
    >>> result = streamscope.scan("model.safetensors", out="results", memory_budget="512MB")  # doctest: +SKIP

The API is imported on first use, so ``import streamscope`` (and the command line's ``--help``) stays fast.
Importing it changes nothing in the process's environment; ``streamscope.environment.tune`` sets what the command
line sets for the native libraries, for a program that wants the same.
"""

from streamscope.errors import CheckpointError, DeviceError, HeaderError, OptionError, StreamscopeError

__version__ = "0.1.0"

_API = ("Checkpoint", "Results", "ScanResult", "Tensor", "open", "scan", "scan_many", "embeddings", "activations", "sensitivity", "build_report", "params", "params_frame", "compare", "compare_frame", "imatrix")

__all__ = [*_API, "CheckpointError", "DeviceError", "HeaderError", "OptionError", "StreamscopeError"]


def __getattr__(name: str):
    if name in _API:
        from streamscope import api

        return getattr(api, name)
    raise AttributeError(f"module 'streamscope' has no attribute {name!r}")
