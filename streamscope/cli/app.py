"""The command line's shared parts: the ``app`` every command registers on, its console, the options several
commands take, and the one error handler every command runs under (``_Commands``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core
import typer.main
from rich.console import Console

from streamscope.cli.errors import handled
from streamscope.report.labels import plain

#: What a value of each type is called in ``--help`` where an option names no metavar of its own.
_METAVARS = {int: "N", float: "X", Path: "PATH", str: "TEXT"}


class _Commands(typer.core.TyperGroup):
    """Every command: ``--help`` reads as a person writes options (``--out DIR``, ``--rank N``, ``--json``; no
    ``<bool>``, ``<list[str]>`` or ``<str>``), and one error handler (``errors.handled``) with ``--debug``."""

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None:
            command.get_params = _readable(command.get_params)
            _handled(command)
        return command

    def get_params(self, ctx):
        return _readable(super().get_params)(ctx)


def _handled(command) -> None:
    """Run ``command`` under ``errors.handled`` and give it ``--debug`` (once; commands are looked up per call)."""
    if getattr(command, "_handled", False) or command.callback is None:
        return
    command.params.append(_debug_option())
    run = command.callback

    def callback(*args, debug: bool = False, **kwargs):
        with handled(debug):
            return run(*args, **kwargs)

    command.callback = callback
    command._handled = True


def _debug_option():
    """A fresh ``--debug`` option, made by typer from a one-option command (so it is typer's own kind)."""
    import copy

    def one(debug: Annotated[bool, typer.Option("--debug", metavar="", help="Show tracebacks of errors (or set STREAMSCOPE_DEBUG=1).")] = False) -> None:
        """Only --debug."""

    single = typer.Typer()
    single.command()(one)
    return copy.deepcopy(typer.main.get_command(single).params[0])


def _readable(get_params):
    def params(ctx):
        out = get_params(ctx)
        for param in out:
            if isinstance(param, typer.core.TyperArgument):
                param.display_type_rich = lambda ctx: None
            elif param.metavar is None:
                annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
                element = (getattr(annotation, "__args__", None) or (annotation,))[0]
                param.metavar = "" if param.is_flag else _METAVARS.get(element, "VALUE")
        return out

    return params


app = typer.Typer(
    cls=_Commands,
    help="Streaming, out-of-core analysis of large neural-network checkpoints.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()


# metavars say what a value is (PATH, SIZE, REGEX); flags show none, rather than typer's <bool> or <list[str]>
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", metavar="DIR", help="Directory for the result files.")]
JsonOpt = Annotated[bool, typer.Option("--json", metavar="", help="Print machine-readable JSON instead of tables.")]
RevisionOpt = Annotated[Optional[str], typer.Option("--revision", metavar="REV", help="Hub revision (branch, tag or commit) of a repo id.")]
PathArg = Annotated[str, typer.Argument(metavar="PATH", help="A checkpoint file or directory, or a hub repo id (org/name, hf://org/name@rev).")]
ReportOpt = Annotated[bool, typer.Option("--report", metavar="", help="Also draw the figures and write report.html into --out.")]


def report_into(results: Path, out: Path | None = None, details: str = "10", quiet: bool = False) -> None:
    from streamscope.report.build import make_report

    page = make_report(results, out, details, progress=not quiet)
    if not quiet:
        console.print(f"report: [bold]{plain(page)}[/] (figures in {plain(page.parent / 'figures')})")


def _version(value: bool) -> None:
    if value:
        from streamscope import __version__

        console.print(f"streamscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """streamscope: scan checkpoints too large for memory, tensor by tensor, block by block."""


def default_name(path: str) -> str:
    from streamscope.api import result_name

    return result_name(path)


def emit(result: dict, out: Path | None, as_json: bool, show) -> None:
    from streamscope.results import json_text, write_json
    from streamscope.schema import SCHEMA_VERSION

    result.setdefault("schema_version", SCHEMA_VERSION)
    text = json_text(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, result)
    if as_json:
        print(text)
    else:
        show()
        if out:
            console.print(f"report written to [bold]{plain(out)}[/]")
