"""The command line, ``edgecompile COMMAND``: a thin layer over the Python API."""

from edgecompile.cli.main import main

__all__ = ["main"]
