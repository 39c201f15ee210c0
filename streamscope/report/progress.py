"""The progress display, which the engine owns (``engine.progress``); importable here for the report's users."""

from streamscope.engine.progress import ScanProgress  # noqa: F401
