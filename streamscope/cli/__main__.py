"""``python -m streamscope.cli``: the same as the ``streamscope`` command."""

from streamscope.cli import main

main()
