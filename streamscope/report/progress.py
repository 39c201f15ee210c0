"""A rich progress bar over bytes and tensors (bytes/s, ETA); silent when disabled."""

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

from streamscope.report.labels import plain


class ScanProgress:
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

    def __enter__(self) -> "ScanProgress":
        if self._progress:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress:
            self._progress.stop()

    def advance(self, nbytes: int) -> None:
        """Called with the bytes of each block as it is done."""
        if self._progress:
            self._progress.update(self._bytes, advance=nbytes)

    def tensor_done(self) -> None:
        self._done_tensors += 1
        if self._progress:
            self._progress.update(self._bytes, description=self._label())
