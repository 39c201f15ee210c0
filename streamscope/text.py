"""``plain``: the form of a name or a token that a rich console prints as written (used by the engine's progress
display and by every printer of the report)."""

from __future__ import annotations

import re

#: Characters a terminal acts on rather than shows: C0 controls (ESC, BEL, CR, ...), DEL, C1 controls (CSI, OSC),
#: and the Unicode line separators and bidirectional overrides that reorder or break what follows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(m: re.Match) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def plain(value) -> str:
    """``value`` as text for ``Console.print`` or a rich ``Table`` cell: rich markup (``[/bold]``, ``[link=...]``)
    escaped and control characters shown as Python writes them (``\\x1b``, ``\\n``), so a tensor name or a
    token read from a file prints as written and never styles, links, moves or retitles the terminal.

    Example:
        >>> plain("a[/bold]\\x1b[2J.weight")
        'a\\\\[/bold]\\\\x1b[2J.weight'
    """
    from rich.markup import escape

    return escape(_CONTROL.sub(_visible, str(value)))
