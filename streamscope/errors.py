"""The errors streamscope raises for bad input.

Each message names the file, what was being done, the cause and, where there is one, the fix.
All derive from built-in types so callers can catch them without importing this module.
"""

from __future__ import annotations


class StreamscopeError(Exception):
    """Base of every error streamscope raises on purpose."""


class CheckpointError(StreamscopeError, ValueError):
    """The checkpoint path or its index cannot be used."""


class HeaderError(CheckpointError):
    """A checkpoint file's header (safetensors, GGUF, PyTorch zip) is malformed or inconsistent with its file."""


class DeviceError(StreamscopeError, RuntimeError):
    """The requested compute device is not available."""


class OptionError(StreamscopeError, ValueError):
    """An option has a value outside its allowed range."""


class Interrupted(StreamscopeError):
    """A run was interrupted (Ctrl-C); its message says what was kept and how to resume."""
