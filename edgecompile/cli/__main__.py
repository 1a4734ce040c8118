"""``python -m edgecompile.cli``: the same as the ``edgecompile`` command."""

from edgecompile.cli.main import main

main()
