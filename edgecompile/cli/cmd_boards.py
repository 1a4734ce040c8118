"""``edgecompile boards``: the supported boards and what each supports."""

from __future__ import annotations

from typing import Any

import click

from edgecompile.cli.output import human_to_stderr, write_json


def _kib(n: int | None) -> str:
    return "host" if n is None else f"{n / 1024:.1f}"


def render_capabilities(records: list[dict[str, Any]]) -> str:
    """The table: sizes in KiB with one decimal in every column; harness, emulator, flash."""
    rows = [("id", "name", "core", "flash KiB", "RAM KiB", "harness", "emulator", "flash")]
    for r in records:
        cap = r["capabilities"]
        emu = cap["emulator"]
        emu_s = "-" if emu is None else (f"{emu['kind']}:{emu['machine']}"
                                         + (" (twin)" if emu["twin"] else ""))
        harness = ", ".join(h if h != "arduino" or cap["arduino_offline"] else "arduino (online)"
                            for h in cap["harness"]) or "library only"
        rows.append((r["id"], r["name"], r["core"], _kib(r["flash_bytes"]), _kib(r["ram_bytes"]),
                     harness, emu_s, ", ".join(cap["flash"]) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {3, 4}
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
                     for row in rows)


@click.command()
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the list as JSON (-: standard output, the table then goes to stderr).")
def boards(json_path: str | None) -> None:
    """List the supported boards: memory (KiB), harness (bare metal / Arduino framework),
    emulator or emulated twin, flash method."""
    from edgecompile.targets.boards import list_boards
    from edgecompile.targets.platforms import platform_for

    err = human_to_stderr(json_path)
    records = [{**b.summary(), "capabilities": platform_for(b).capabilities()} for b in list_boards()]
    click.echo(render_capabilities(records), err=err)
    write_json(json_path, {"boards": records})
