"""``python -m mosu``: the same as the ``mosu`` command."""

from mosu.cli.main import main

main()
