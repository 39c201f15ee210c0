"""``python -m streamscope``: the same as the ``streamscope`` command."""

from streamscope.cli import main

main()
