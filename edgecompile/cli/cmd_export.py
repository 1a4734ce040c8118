"""``edgecompile export``: a PlatformIO project for a board."""

from __future__ import annotations

import click

from edgecompile.cli.options import LAYOUT_OPT, MODEL_ARG, PROFILE_OPT
from edgecompile.cli.output import human_to_stderr, warn, write_json
from edgecompile.cli.progress import reporter
from edgecompile.ir.model import Layout


@click.command()
@MODEL_ARG
@click.option("--board", required=True, help="Target board id (see `edgecompile boards`), e.g. uno, native.")
@click.option("--bits", type=click.Choice(["8", "16"]), default=None,
              help="Weight width [default: 8; a quantized-model .json keeps its own].")
@click.option("--calib", type=click.Path(), default=None,
              help="Raw calibration inputs [N,T,D] (.npy); without it formats use assumed ranges.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Project directory to create [default: ./<name>_<board>].")
@click.option("--force", is_flag=True,
              help="Replace a project exported there before: the files its manifest lists and the build "
                   "outputs go, other files stay.")
@click.option("--name", default=None, help="C name of the model library [default: the checkpoint's stem].")
@click.option("--zip", "zip_library", is_flag=True,
              help="Also write <name>.zip: the library for the Arduino IDE's "
                   "Sketch > Include Library > Add .ZIP Library (docs/arduino.md).")
@click.option("--library-version", default="1.0.0", show_default=True,
              help="Version written into the library's library.json / library.properties.")
@click.option("--library-author", default="unspecified", show_default=True,
              help="Author (and maintainer) written into the library's metadata.")
@click.option("--library-license", default=None,
              help="SPDX license id for the library's library.json [default: none stated].")
@click.option("--library-url", default="", help="Homepage written into the library's metadata.")
@click.option("--framework", type=click.Choice(["baremetal", "arduino"]), default="baremetal",
              show_default=True,
              help="The harness on the family's register-level HAL, or on the Arduino core's Serial "
                   "(PlatformIO framework = arduino; docs/targets.md).")
@click.option("--library-only", is_flag=True,
              help="Write only the model library (what goes in lib/<name>/, with its Arduino example) "
                   "for the board's core: no harness, no PlatformIO project.")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write what was exported (directory, library, manifest) as JSON (-: standard output).")
@click.option("--raw-scale", default=None, metavar="F[,F...]",
              help="Real value of one raw int16 LSB (one, or one per feature): adds "
                   "<name>_step_raw, integer normalisation of raw sensor values (docs/c-api.md).")
@click.option("--raw-offset", default=None, metavar="F[,F...]",
              help="Real value of raw 0 (with --raw-scale) [default: 0].")
@LAYOUT_OPT
@PROFILE_OPT
def export(model: str, board: str, bits: str | None, calib: str | None, out_dir: str | None,
           force: bool, name: str | None, zip_library: bool, library_version: str, library_author: str,
           library_license: str | None, library_url: str, framework: str, library_only: bool,
           json_path: str | None, layout: Layout | None, profile: str | None,
           raw_scale: str | None = None, raw_offset: str | None = None) -> None:
    """Write a PlatformIO project (model library + firmware harness) for a board.

    MODEL is a checkpoint (.npz or a directory of .npy) or a quantized model (.json from
    `edgecompile quantize`). The output is byte-identical for identical input, written
    atomically, with edgecompile-manifest.json listing the sha256 of every file.
    """
    from edgecompile.pipeline.export import export_project

    err = human_to_stderr(json_path)
    from edgecompile.codegen.render import LibraryInfo

    library = LibraryInfo(library_version, library_author, library_license, library_url)
    from edgecompile.sim.rawinput import raw_option

    raw_input = raw_option(raw_scale, raw_offset)
    with reporter("export") as progress:
        result = export_project(model, board, bits=int(bits) if bits else None, calib=calib,
                                out_dir=out_dir, force=force, name=name, warn=warn,
                                zip_library=zip_library, library=library, progress=progress,
                                framework=framework, library_only=library_only, layout=layout,
                                profile=profile or "auto", raw_input=raw_input)
    write_json(json_path, result.to_json())
    what = (f"the library {result.name} alone" if library_only
            else f"library lib/{result.name}/")
    click.echo(f"wrote {result.out_dir}: {len(result.manifest.files) + 1} files, {what} for "
               f"{result.board}; {result.qmodel.summary()}", err=err)
