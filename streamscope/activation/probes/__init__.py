"""The activation probes: every statistic taken from the streamed forward pass, registered once below.

A probe (see ``base.Probe``) names the modules it watches, keeps a mergeable state per module fed one call at a
time, reduces it when the module's decoder layer is done, and says what goes to ``activations.json``,
``activations.csv``, ``arrays.zarr``, its own files and the report. Its config keys (``options`` under
``visualization.<section>``, ``enabled`` switches) become part of the config's defaults, its validation and
``--help``. To add one: write ``probes/<name>.py`` with a ``PROBE = Probe(...)`` and add it to ``PROBES``.
"""

from __future__ import annotations

from streamscope.activation.probes import act_scales, distribution, heatmap, imatrix, importance, magnitude, outliers, routing, weight_magnitude
from streamscope.activation.probes.base import Call, Probe, Run, Watch

PROBES: list[Probe] = [
    magnitude.PROBE,
    weight_magnitude.PROBE,
    outliers.PROBE,
    distribution.PROBE,
    heatmap.PROBE,
    act_scales.PROBE,
    imatrix.PROBE,
    importance.PROBE,
    routing.PROBE,
]


def register(probe: Probe) -> None:
    """Add ``probe`` (a plugin, or a test's toy probe); its name must be new."""
    if any(p.name == probe.name for p in PROBES):
        raise ValueError(f"an activation probe named {probe.name!r} is already registered")
    PROBES.append(probe)


def unregister(name: str) -> None:
    PROBES[:] = [p for p in PROBES if p.name != name]


__all__ = ["PROBES", "Call", "Probe", "Run", "Watch", "register", "unregister"]
