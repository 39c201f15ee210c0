"""``python -m streamscope.cli``: the same as the ``streamscope`` command."""

from streamscope.__main__ import main

main()
