"""Byte sizes as users write them (``512MB``, ``1.5GiB``) and as people read them."""

from __future__ import annotations

import re

from streamscope.errors import OptionError

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}  # fmt: skip


def parse_bytes(text: str | int, what: str = "--memory-budget") -> int:
    """``"512MB"``, ``"1.5GiB"``, ``"64m"`` or an int -> bytes (binary units).

    Raises:
        OptionError: ``text`` is not a size; the message names the option ``what``.
    """
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise OptionError(f"{what} {text!r} is not a size; use a number with an optional unit, e.g. 512MB or 2GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
