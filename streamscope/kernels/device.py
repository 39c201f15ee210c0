"""The compute device a name stands for: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda[:N]``, ``mps``."""

from __future__ import annotations

from streamscope.errors import DeviceError, OptionError

DEVICES = ("auto", "cpu", "cuda", "mps")
#: the device every command takes unless told: the first of cuda, mps, cpu that is present
DEFAULT_DEVICE = "auto"


def resolve_device(name: str):
    """``auto`` picks cuda, then mps, then cpu; naming an absent device raises ``DeviceError``."""
    import torch

    name = (name or DEFAULT_DEVICE).lower()
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
    raise OptionError(f"--device must be one of {', '.join(DEVICES)}; got {name!r}")
