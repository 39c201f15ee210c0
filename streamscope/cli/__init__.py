"""The ``streamscope`` command line: one module per command group, each registering its commands on ``app``.

- ``app``: the app, its console, the options several commands share, the one error handler (``errors``);
- ``scan``: ``scan`` (one checkpoint or several); ``compare``: ``params`` and ``compare``; ``embeddings``;
  ``activations``; ``sensitivity``; ``imatrix``; ``tools``: ``report``, ``bench`` and ``download``.

Commands import what they use when they run (torch, pandas, dask, zarr), so ``--help`` and ``params`` start
fast. A command body calls the API, calls one printer, and returns; errors become one line (``errors``).
"""

from __future__ import annotations

# imported in the order ``--help`` lists the commands
from streamscope.cli import scan, embeddings, activations, compare, sensitivity, imatrix, tools  # noqa: F401,I001  (register)
from streamscope.cli.app import app, console
from streamscope.cli.scan import demo_checkpoint, parse_analysis_options, resolve_analyses

__all__ = ["app", "console", "demo_checkpoint", "parse_analysis_options", "resolve_analyses"]
