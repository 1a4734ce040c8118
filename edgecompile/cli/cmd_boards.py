"""``edgecompile boards``: the supported boards."""

from __future__ import annotations

import click

from edgecompile.cli.output import human_to_stderr, write_json


@click.command()
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the list as JSON (-: standard output, the table then goes to stderr).")
def boards(json_path: str | None) -> None:
    """List the supported boards with memory budgets and emulators."""
    from edgecompile.targets.boards import list_boards, render_boards

    err = human_to_stderr(json_path)
    found = list_boards()
    click.echo(render_boards(found), err=err)
    write_json(json_path, {"boards": [b.summary() for b in found]})
