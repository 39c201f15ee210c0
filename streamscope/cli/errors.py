"""Every command's errors, mapped in one place to one red line plus a hint, and an exit code.

Every command runs under ``handled`` (``cli.app`` wires it to each command with its ``--debug``): known
errors (streamscope's own, OS errors such as a full disk or a missing permission) print one line naming the
file and the problem, with a hint chosen by the exception's type; Ctrl-C exits 130. ``--debug`` (or
``STREAMSCOPE_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import errno
import os

import typer
from rich.console import Console

from streamscope.errors import CheckpointError, DeviceError, HeaderError, Interrupted, OptionError, StreamscopeError
from streamscope.report.labels import plain

err_console = Console(stderr=True)

#: exception type -> hint; the most specific type that matches wins.
HINTS: dict[type, str] = {
    # formats' own errors carry their hint (io.pytorch.PyTorchError.hint, io.gguf.GGUFError.hint); this one fits any
    HeaderError: "the file may be truncated or not a valid file of its format; re-download or re-save it",
    DeviceError: "run with --device cpu, or check `python -c 'import torch; print(torch.cuda.is_available())'`",
    OptionError: "see the command's --help for the allowed values",
    CheckpointError: "give a checkpoint: a .safetensors, .gguf or PyTorch file, or a directory holding them",
}
_ERRNO_HINTS = {
    errno.ENOSPC: "the disk is full: free space (or choose another --out); finished tensors are kept and a rerun resumes",
    errno.EACCES: "no permission: choose another --out or fix the directory's permissions",
    errno.EROFS: "the file system is read-only: choose another --out",
}


def fail(e: BaseException) -> None:
    """Print ``e`` as one line plus its hint and exit 1."""
    if isinstance(e, OSError) and not isinstance(e, StreamscopeError):
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        message = f"{where}{e.strerror or e}"
        hint = _ERRNO_HINTS.get(e.errno or 0)
    else:
        message = str(e)
        # an error that carries its own hint (None: none fits) is not given the generic one of its type
        hint = e.hint if hasattr(e, "hint") else next((h for t, h in HINTS.items() if isinstance(e, t)), None)
    err_console.print(f"[bold red]error:[/] {plain(message)}", highlight=False, soft_wrap=True)
    if hint:
        err_console.print(f"[dim]hint: {hint}[/]", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def debug_enabled(debug: bool = False) -> bool:
    return bool(debug) or os.environ.get("STREAMSCOPE_DEBUG", "") not in ("", "0")


@contextlib.contextmanager
def handled(debug: bool = False):
    """Run the block, turning known errors into one line (see the module docstring)."""
    try:
        yield
    except typer.Exit:
        raise
    except Interrupted as e:
        if debug_enabled(debug):
            raise
        err_console.print(f"[bold red]{plain(e)}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        if debug_enabled(debug):
            raise
        err_console.print("[bold red]interrupted[/]; finished work is kept, run the same command to resume")
        raise typer.Exit(130) from None
    except (StreamscopeError, OSError) as e:
        if debug_enabled(debug):
            raise
        fail(e)
