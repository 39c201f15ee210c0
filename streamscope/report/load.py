"""A finished results directory, read for the report: ``Results`` and the checks of its JSON files, which live in the
results room (``streamscope.results_dir``) since a scan returns the same type; the names the report imports stay
here."""

from streamscope.results_dir import (  # noqa: F401
    ACTIVATIONS,
    EMBEDDINGS,
    INT,
    MODEL,
    NONE,
    NUM,
    NUM_,
    RECORD,
    STR,
    STR_,
    Each as _Each,
    Results,
    check as _check,
    read_object as _read,
)
