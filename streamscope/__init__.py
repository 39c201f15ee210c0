"""streamscope: streaming, out-of-core analysis of large neural-network checkpoints.

Example:
    >>> import streamscope
    >>> ckpt = streamscope.open("model.safetensors")  # doctest: +SKIP
    >>> result = streamscope.scan("model.safetensors", out="results", memory_budget="512MB")  # doctest: +SKIP
"""

from streamscope.api import Checkpoint, ScanResult, Tensor, compare, compare_frame, open, params, params_frame, scan
from streamscope.errors import CheckpointError, DeviceError, HeaderError, OptionError, StreamscopeError

__version__ = "0.1.0"

__all__ = [
    "Checkpoint", "ScanResult", "Tensor", "open", "scan", "params", "params_frame", "compare", "compare_frame",
    "CheckpointError", "DeviceError", "HeaderError", "OptionError", "StreamscopeError",
]  # fmt: skip
