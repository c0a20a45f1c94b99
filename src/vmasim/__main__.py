"""``python -m vmasim``: the same as the ``vmasim`` command."""

from vmasim.cli import main

main()
