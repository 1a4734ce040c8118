"""``edgecompile verify``: host-vs-device parity over serial."""

from __future__ import annotations

import sys

import click

from edgecompile.cli.output import human_to_stderr, save_npy, write_json
from edgecompile.cli.progress import reporter


@click.command()
@click.argument("project_dir", metavar="DIR", type=click.Path())
@click.option("--port", default=None, help="Serial device or pyserial URL (socket://, rfc2217://, ...).")
@click.option("--emulate", is_flag=True, help="Build if needed and run on the board's emulator.")
@click.option("--data", required=True, type=click.Path(), help="Raw inputs X [N,T,D] (.npy).")
@click.option("--labels", default=None, type=click.Path(), help="Class labels y [N] (.npy).")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the report as JSON: board, bits, port, mismatched, first_divergence, "
                   "traced and the numbers of the table (-: standard output, the text then goes "
                   "to stderr).")
@click.option("-o", "--out", type=click.Path(), default=None,
              help="Save the device's logits [N,C] (float64 .npy, dequantized as `predict` does; "
                   "-: standard output).")
@click.option("--trace", is_flag=True,
              help="Also compare hidden states step by step; name the first (step, unit) that differs.")
@click.option("--report", "report_dir", type=click.Path(), default=None,
              help="Write an HTML page with plots (DIR/index.html): parity per sequence, accuracy, "
                   "logit errors, memory and cycles (a new or empty DIR, or an earlier report).")
@click.pass_context
def verify(ctx: click.Context, project_dir: str, port: str | None, emulate: bool, data: str,
           labels: str | None, json_path: str | None, out: str | None, trace: bool,
           report_dir: str | None) -> None:
    """Prove over serial that the device computes exactly what the host predicts.

    Exit 0 when every logit is equal, 1 on any mismatch or a device running another model,
    2 on bad input or an unusable port. With --debug every frame is hex-dumped to stderr.
    """
    from edgecompile.pipeline.verify import verify_project

    err = human_to_stderr(json_path, out)
    if report_dir is not None:
        from edgecompile.report.page import check_out_dir

        check_out_dir(report_dir)
    log = (lambda line: click.echo(line, err=True)) if ctx.obj.get("debug") else None
    with reporter("verify") as progress:
        report = verify_project(project_dir, data=data, labels=labels, port=port, emulate=emulate,
                                trace=trace,
                                progress=lambda done, total: progress(done, total, "sequences"),
                                echo=lambda line: click.echo(line, err=True), log=log)
    click.echo(report.render(), err=err)
    if out is not None:
        save_npy(out, report.dequantized_logits())
    write_json(json_path, report.to_json())
    if report_dir is not None:
        from edgecompile.report.verify_page import write_verify_report

        page = write_verify_report(report, project_dir, report_dir, data=data)
        click.echo(f"wrote {page}", err=err)
    if not report.ok:
        sys.exit(1)
