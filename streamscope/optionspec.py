"""How an option is declared, once: a dataclass field with its default, help line and command-line spelling.

The analyses' options dataclasses, the engine's ``EngineOptions`` and the embedding study's ``ClusterOptions``
declare their fields with ``opt``; ``specs`` reads them back. The command line builds its options from these
specs (``cli.options``), the API takes its defaults from the same dataclasses, and the resume fingerprint is
made from their values, so a default or a help line is written in one place.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any


def opt(default: Any, help: str, *, metavar: str | None = None, short: str | None = None, shown: str | None = None,
        sep: str = ",", advanced: bool = False) -> Any:  # fmt: skip
    """A dataclass field carrying its help line and command-line spelling.

    ``metavar``: what the value is called in ``--help`` (``SIZE``, ``REGEX``); ``short``: a one-letter flag;
    ``shown``: the default as ``--help`` shows it when the value itself says little (None defaults);
    ``sep``: how a tuple default is written on the command line (``2:32``, ``int8,int4``); ``advanced``: a tuning
    knob, which ``--help`` lists in a panel of its own after the options most runs set.
    """
    meta = {"help": help, "metavar": metavar, "short": short, "shown": shown, "sep": sep, "advanced": advanced}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not options; use a tuple")
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Spec:
    """One declared option, as the command line and the docs need it."""

    name: str
    default: Any
    kind: type  # str, int, float, bool or tuple (written with ``sep``)
    help: str
    metavar: str | None
    short: str | None
    shown: str | None
    sep: str
    advanced: bool

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def text(self, value: Any) -> str:
        """``value`` as it is written on the command line."""
        if isinstance(value, tuple):
            return self.sep.join(str(v) for v in value)
        return str(value)

    def parse(self, text: str) -> Any:
        """What a user typed, as this option's type; a bool from its words (``bool("false")`` would be True).

        Raises:
            ValueError: the text is no value of the type.
        """
        if self.kind is bool:
            words = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
            if text.strip().lower() not in words:
                raise ValueError(text)
            return words[text.strip().lower()]
        if self.kind in (int, float):
            return self.kind(text)
        return text  # str, and tuples: the dataclass parses its own text (``k_range="2:32"``)


def specs(cls: type) -> list[Spec]:
    """The options a dataclass declares, in field order (fields made without ``opt`` get an empty help line)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        out.append(Spec(f.name, f.default, _kind(hints.get(f.name), f.default), meta.get("help", ""), meta.get("metavar"),
                        meta.get("short"), meta.get("shown"), meta.get("sep", ","), meta.get("advanced", False)))  # fmt: skip
    return out


def _kind(hint: Any, default: Any) -> type:
    """The plain type of an option: the non-None member of ``X | None``; tuples and ``str | int`` unions are text."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = typing.get_origin(hint)
    if base is tuple or isinstance(default, tuple):
        return tuple
    if args and base is not tuple:
        return args[0] if len(args) == 1 and args[0] in (bool, int, float, str) else str
    return hint if hint in (bool, int, float, str) else str
