"""``edgecompile flash``: upload a built project."""

from __future__ import annotations

import click

from edgecompile.cli.options import OFFLINE_OPT, PROJECT_ARG
from edgecompile.cli.progress import reporter


@click.command()
@PROJECT_ARG
@click.option("--port", default=None,
              help="Serial port of an AVR board (e.g. /dev/ttyACM0); for a Cortex-M board the mount "
                   "point of its USB drive (found under /media, /run/media, /Volumes when omitted) or "
                   "the debug probe's id (the only probe when omitted).")
@click.option("--method", type=click.Choice(["auto", "pio", "drive", "pyocd", "openocd"]),
              default="auto", show_default=True,
              help="How to flash: the board's own way (auto), PlatformIO's uploader, a copy onto the "
                   "board's USB drive, or a debug probe through pyOCD or OpenOCD.")
@OFFLINE_OPT
@click.option("--timeout", type=click.FloatRange(1.0), default=None,
              help="Give up the upload after this many seconds [default: 120].")
def flash(project_dir: str, port: str | None, method: str, offline: bool | None,
          timeout: float | None) -> None:
    """Upload a built project to a board: avrdude through PlatformIO for AVR boards; a copy onto
    the USB drive (DAPLink, ST-LINK, the Pico's UF2 drive) or a debug probe for Cortex-M boards."""
    from edgecompile.targets.flash import UPLOAD_TIMEOUT_S, flash_project

    with reporter("flash") as progress:
        flash_project(project_dir, port, offline=offline, echo=click.echo,
                      timeout=timeout or UPLOAD_TIMEOUT_S, progress=progress, method=method)
