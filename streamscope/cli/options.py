"""Command-line options made from the declared ones (``optionspec``): the engine's table, the analyses'
options dataclasses, the embedding study's ``ClusterOptions``.

``declared(source, into=...)`` adds one ``--flag`` per declared field to a command and hands the command the
values the user gave as one dict (a flag left out is absent, so the API's default, which is the declared one,
applies). ``--help`` shows each declared default. A new analysis option therefore reaches ``streamscope scan``
without a line here or in the command.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Annotated, Any, Callable, Optional

import typer

from streamscope.optionspec import Spec, specs


def declared(source: type | list[Spec], *, into: str, panel: str | None = None, advanced_panel: str | None = None,
             only: tuple[str, ...] | None = None, panels: dict[str, str] | None = None) -> Callable:  # fmt: skip
    """Decorate a command: one keyword-only option per field of ``source`` (an options dataclass, or specs), their
    values passed as the dict ``into``. ``only`` keeps those fields, in its order; advanced ones go to
    ``advanced_panel``, and ``panels`` puts single options in panels of their own."""
    chosen = specs(source) if isinstance(source, type) else list(source)
    if only is not None:
        chosen = sorted((s for s in chosen if s.name in only), key=lambda s: only.index(s.name))
    panels = panels or {}

    def panel_of(s: Spec) -> str | None:
        return panels.get(s.name) or (advanced_panel if s.advanced and advanced_panel else panel)

    def wrap(command: Callable) -> Callable:
        hints = typing.get_type_hints(command, include_extras=True)
        signature = inspect.signature(command)
        kept = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values() if p.name != into]
        added = [inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=cli_default(s), annotation=annotated(s, panel_of(s)))
                 for s in chosen]  # fmt: skip
        names = {s.name for s in chosen}

        @functools.wraps(command)
        def run(*args, **kwargs):
            given = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            return command(*args, **kwargs, **{into: {k: v for k, v in given.items() if v is not None}})

        run.__signature__ = signature.replace(parameters=_ordered(kept + added))
        run.__annotations__ = {p.name: p.annotation for p in run.__signature__.parameters.values()}
        return run

    return wrap


def cli_default(spec: Spec) -> Any:
    """The default as the command line holds it: the declared value (a tuple as its text), or None where
    ``--help`` shows a description of it instead (``shown``): there the flag's absence is what counts."""
    if spec.shown is not None or spec.default is None:
        return None
    return spec.text(spec.default) if spec.kind is tuple else spec.default


def annotated(spec: Spec, panel: str | None = None) -> Any:
    """``spec`` as a typer option (``Annotated``), its default ``cli_default(spec)``."""
    decls = [f"{spec.flag}/--no-{spec.flag[2:]}" if spec.kind is bool else spec.flag] + ([spec.short] if spec.short else [])
    kind = {bool: bool, int: int, float: float}.get(spec.kind, str)
    shown = spec.shown
    if shown is None and spec.kind is tuple and spec.sep == ",":  # spaced, so that --help wraps a long list
        shown = ", ".join(map(str, spec.default))
    info = typer.Option(*decls, metavar="" if spec.kind is bool else spec.metavar, help=spec.help,
                        show_default=shown if shown is not None else True, rich_help_panel=panel)  # fmt: skip
    return Annotated[Optional[kind], info]


def _ordered(params: list[inspect.Parameter]) -> list[inspect.Parameter]:
    """Positional parameters first, keyword-only ones after, each group in its order (what ``inspect`` demands)."""
    return [p for p in params if p.kind != p.KEYWORD_ONLY] + [p for p in params if p.kind == p.KEYWORD_ONLY]
