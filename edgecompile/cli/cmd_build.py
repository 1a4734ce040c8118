"""``edgecompile build``: PlatformIO build with the memory budget checked."""

from __future__ import annotations

import click

from edgecompile.cli.options import OFFLINE_OPT, PROJECT_ARG
from edgecompile.cli.output import human_to_stderr, write_json
from edgecompile.cli.progress import reporter


@click.command()
@PROJECT_ARG
@OFFLINE_OPT
@click.option("-v", "--verbose", is_flag=True, help="Show every line of PlatformIO's output.")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the build report (sizes, budget) as JSON (-: standard output, the log "
                   "then goes to stderr).")
def build(project_dir: str, offline: bool | None, verbose: bool, json_path: str | None) -> None:
    """Build an exported project with PlatformIO, checking the board's memory budget.

    The budget is checked before building (an estimate from the compiled sources) and after
    linking (the ELF's sizes); a firmware that cannot fit stops with exit status 2.
    """
    from edgecompile.targets.build import build_project

    err = human_to_stderr(json_path)
    with reporter("build") as progress:
        result = build_project(project_dir, offline=offline,
                               echo=lambda line: click.echo(line, err=err), verbose=verbose,
                               progress=progress)
    write_json(json_path, result.to_json())
