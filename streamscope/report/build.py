"""``streamscope report``: figures and ``report.html`` from a finished results directory, never the checkpoint."""

from __future__ import annotations

from pathlib import Path

from streamscope.errors import OptionError


def make_report(results_dir: str | Path, out: str | Path | None = None, details: str | int = 10, progress: bool = False) -> Path:
    """Draw every figure into ``OUT/figures/`` and write ``OUT/report.html`` (``OUT`` is ``results_dir`` by default).

    Args:
        results_dir: what ``scan --out`` wrote (``tensors.json``, ``model.json``, ``arrays.zarr``), or ``embeddings``,
            ``activations`` or ``sensitivity`` did.
        out: where the figures and the report go.
        details: detail figures (histogram, spectrum) for the N riskiest tensors, or ``"all"``.

    Returns:
        The path of ``report.html``.
    """
    from streamscope.progress import Steps
    from streamscope.report.figures import FIGURES, layer_details, render
    from streamscope.report.html import write_report
    from streamscope.report.sensitivity_data import open_results

    if str(details) != "all" and not (str(details).isdigit()):
        raise OptionError(f"--details must be a number of tensors or 'all'; got {details!r}")
    results = open_results(results_dir)  # Results.open, with sensitivity.json where there is one
    out = Path(out) if out is not None else Path(results_dir)
    figures_dir = out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    total = len(FIGURES) + len(layer_details.chosen(results, details))
    with Steps(total, "report", "figures", enabled=progress) as bar:
        rendered = render(results, figures_dir, details, on_figure=bar.advance)
    return write_report(results, figures_dir, rendered, out / "report.html")
