"""The engine's progress displays, built where the activation engine and the report build theirs
(``streamscope.progress``)."""

from streamscope.progress import PassProgress, ScanProgress  # noqa: F401
