"""Arguments and options that several commands share."""

from __future__ import annotations

import click

MODEL_ARG = click.argument("model", type=click.Path(dir_okay=True))


PROJECT_ARG = click.argument("project_dir", metavar="DIR", type=click.Path(file_okay=False))
OFFLINE_OPT = click.option(
    "--offline/--online", default=None,
    help="Local platform over Debian toolchains (no network), or the standard PlatformIO "
         "platform. Default: offline when the PlatformIO registry cannot be reached.")
LAYOUT_OPT = click.option(
    "--layout", type=click.Choice(["in-out", "out-in"]), default=None,
    help="How the checkpoint's matrices are stored: in-out (x @ W, W [D,H]: EdgeML's TF trainer, "
         "edgeml_pytorch on GitHub, edgecompile) or out-in (W [H,D]: edgeml-pytorch 0.3.0's "
         "FastGRNN) [default: detected from the shapes].")
PROFILE_OPT = click.option(
    "--profile", type=click.Choice(["auto", "precise", "fast"]), default=None,
    help="Arithmetic profile (docs/fixed-point.md). precise: interpolated sigmoid/tanh tables "
         "(error <= 1.7/3.4 LSB of Q14), the most faithful to float. fast: direct 512-entry tables "
         "(<= 64/128 LSB), a per-model gate-coefficient table and one floor shift per unit: "
         "a quarter to a third fewer cycles per step, usually the same argmax. auto: fast, unless the "
         "calibration data (--calib) shows fast changing an argmax that precise gets right; when "
         "exporting for AVR also precise for a model its fast assembly does not cover (sparse factors, "
         "a relu gate); ERNN: always fast, its only profile "
         "[default: auto; a quantized model or project keeps its own].")
