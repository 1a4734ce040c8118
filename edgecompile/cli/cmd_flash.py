"""``edgecompile flash``: upload a built project."""

from __future__ import annotations

import click

from edgecompile.cli.options import OFFLINE_OPT, PROJECT_ARG


@click.command()
@PROJECT_ARG
@click.option("--port", required=True, help="Serial port of the board (e.g. /dev/ttyACM0).")
@OFFLINE_OPT
@click.option("--timeout", type=click.FloatRange(1.0), default=None,
              help="Give up the upload after this many seconds [default: 120].")
def flash(project_dir: str, port: str, offline: bool | None, timeout: float | None) -> None:
    """Upload a built project to a board through PlatformIO (avrdude for AVR boards)."""
    from edgecompile.targets.flash import UPLOAD_TIMEOUT_S, flash_project

    flash_project(project_dir, port, offline=offline, echo=click.echo,
                  timeout=timeout or UPLOAD_TIMEOUT_S)
