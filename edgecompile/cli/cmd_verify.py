"""``edgecompile verify``: host-vs-device parity over serial."""

from __future__ import annotations

import sys

import click

from edgecompile.cli.output import human_to_stderr, write_json


@click.command()
@click.argument("project_dir", metavar="DIR", type=click.Path())
@click.option("--port", default=None, help="Serial device or pyserial URL (socket://, rfc2217://, ...).")
@click.option("--emulate", is_flag=True, help="Build if needed and run on the board's emulator.")
@click.option("--data", required=True, type=click.Path(), help="Raw inputs X [N,T,D] (.npy).")
@click.option("--labels", default=None, type=click.Path(), help="Class labels y [N] (.npy).")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the report as JSON (-: standard output, the text then goes to stderr).")
@click.option("--trace", is_flag=True,
              help="Also compare hidden states step by step; name the first (step, unit) that differs.")
@click.pass_context
def verify(ctx: click.Context, project_dir: str, port: str | None, emulate: bool, data: str,
           labels: str | None, json_path: str | None, trace: bool) -> None:
    """Prove over serial that the device computes exactly what the host predicts.

    Exit 0 when every logit is equal, 1 on any mismatch or a device running another model,
    2 on bad input or an unusable port. With --debug every frame is hex-dumped to stderr.
    """
    from edgecompile.pipeline.verify import verify_project

    err = human_to_stderr(json_path)
    bar = {}

    def progress(done: int, total: int) -> None:
        if total < 20:
            return
        if "bar" not in bar:
            bar["bar"] = click.progressbar(length=total, label="verifying", file=sys.stderr)
            bar["bar"].__enter__()
        bar["bar"].update(done - bar["bar"].pos)
        if done == total:
            bar.pop("bar").__exit__(None, None, None)

    log = (lambda line: click.echo(line, err=True)) if ctx.obj.get("debug") else None
    report = verify_project(project_dir, data=data, labels=labels, port=port, emulate=emulate,
                            trace=trace, progress=progress,
                            echo=lambda line: click.echo(line, err=True), log=log)
    click.echo(report.render(), err=err)
    write_json(json_path, report.to_json())
    if not report.ok:
        sys.exit(1)
