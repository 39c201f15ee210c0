"""The one progress display of every command: a bar over bytes and tensors (bytes/s, ETA) for a scan, one over the
passes of a study over a matrix's rows, and a counter of finished steps (decoder layers, figures); each silent when
disabled. A base module: the engine, the activation engine and the report all show progress, and none of them may
import another's."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from streamscope.text import plain


class _Live:
    """A rich display started and stopped by ``with``, or by ``start`` and ``close`` (``_progress`` None: silent)."""

    _progress = None

    def start(self):
        if self._progress:
            self._progress.start()
        return self

    def close(self) -> None:
        if self._progress:
            self._progress.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class ScanProgress(_Live):
    def __init__(self, total_bytes: int, total_tensors: int, enabled: bool = True, console: Console | None = None,
                 label: str = "scan"):  # fmt: skip
        self.enabled = enabled
        self.label = label
        self._progress = None
        self._tensors, self._done_tensors = total_tensors, 0
        if enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console or Console(stderr=True),
                transient=False,
            )
            self._bytes = self._progress.add_task(self._label(), total=max(total_bytes, 1))

    def _label(self) -> str:
        return f"[bold]{plain(self.label)}[/] {self._done_tensors}/{self._tensors} tensors" if self._progress else ""

    def advance(self, nbytes: int) -> None:
        """Called with the bytes of each block as it is done."""
        if self._progress:
            self._progress.update(self._bytes, advance=nbytes)

    def tensor_done(self) -> None:
        self._done_tensors += 1
        if self._progress:
            self._progress.update(self._bytes, description=self._label())


class PassProgress(_Live):
    """A bar over the passes of a study over one matrix's rows (fraction, ETA); silent when disabled.

    The number of passes is known only as a bound (iterations stop when they settle): the bar's total is that bound
    until ``passes_done`` says how many remain, so the ETA shown is at most the real one's bound.
    """

    def __init__(self, label: str, rows: int, max_passes: int, enabled: bool = True, console: Console | None = None):
        self.rows, self.max_passes, self.label = max(rows, 1), max_passes, label
        self.done = 0
        self._progress = None
        if enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=12),
                TextColumn("{task.percentage:>3.0f}% ETA"),
                TimeRemainingColumn(),
                console=console or Console(stderr=True),
            )
            self._task = self._progress.add_task(self._describe(), total=self.rows * max_passes)

    def _describe(self, finished: bool = False) -> str:
        if finished:
            return f"[bold]{plain(self.label)}[/]: {self.done} passes"
        return f"[bold]{plain(self.label)}[/]: pass {min(self.done + 1, self.max_passes)}/≤{self.max_passes}"

    def streamed(self, blocks):
        """``blocks`` (a callable giving ``(row_start, row_stop, block)``), each block counted as it is handed on."""

        def counted():
            for r0, r1, block in blocks():
                if self._progress:
                    self._progress.advance(self._task, r1 - r0)
                yield r0, r1, block

        return counted

    def passes_done(self, n: int, remaining: int | None = None) -> None:
        """``n`` passes are finished; ``remaining``, when known, is how many are left."""
        self.done = n
        if self._progress:
            total = self.rows * (n + remaining) if remaining is not None else self.rows * self.max_passes
            self._progress.update(self._task, completed=self.rows * n, total=total, description=self._describe(remaining == 0))


class Steps(_Live):
    """A transient counter of finished steps (``label unit``: "activations decoder layers", "report figures"), gone
    from the terminal when it stops; silent when disabled."""

    def __init__(self, total: int, label: str, unit: str, enabled: bool = True, console: Console | None = None):
        self._progress = None
        if enabled:
            self._progress = Progress(transient=True, console=console)
            self._task = self._progress.add_task(f"[bold]{plain(label)}[/] {plain(unit)}", total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress:
            self._progress.advance(self._task, n)

    def update(self, stage: str, done: int, total: int) -> None:
        """The forward pass's ``progress(stage, done, total)`` callback: ``done`` steps are finished (the label names
        the one stage shown)."""
        if self._progress:
            self._progress.update(self._task, completed=done)
