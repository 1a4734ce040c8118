"""The command line: a thin layer over the Python API (every command is scriptable from Python)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

import click

from edgecompile import __version__
from edgecompile.cli.cmd_boards import boards
from edgecompile.cli.cmd_build import build
from edgecompile.cli.cmd_evaluate import evaluate
from edgecompile.cli.cmd_export import export
from edgecompile.cli.cmd_fit import fit
from edgecompile.cli.cmd_flash import flash
from edgecompile.cli.cmd_inspect import inspect
from edgecompile.cli.cmd_predict import predict
from edgecompile.cli.cmd_quantize import quantize
from edgecompile.cli.cmd_robustness import robustness
from edgecompile.cli.cmd_train import train
from edgecompile.cli.cmd_verify import verify
from edgecompile.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EdgecompileError, Terminated, one_line


class _Group(click.Group):
    """Every failure becomes one line on stderr and an exit status (see :mod:`edgecompile.errors`):
    :class:`EdgecompileError` its own (1 or 2), numeric overflow, lack of memory and unexpected
    OS errors 2, Ctrl-C 130, SIGTERM 143, anything else 3 (an internal error)."""

    def invoke(self, ctx: click.Context) -> Any:
        def fail(message: str, code: int) -> NoReturn:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"edgecompile: {message}", err=True)
            sys.exit(code)

        previous = _install_signal_handlers()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # no numpy warning leaks to stderr
                return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort,
                BrokenPipeError):
            raise
        except EdgecompileError as exc:
            fail(f"error: {one_line(exc)}", exc.exit_code)
        except Terminated as exc:
            _exit_now(ctx, f"terminated ({signal.Signals(exc.signum).name})", exc.exit_code)
        except KeyboardInterrupt:
            _exit_now(ctx, "interrupted", EXIT_INTERRUPTED)
        except (FloatingPointError, RuntimeWarning) as exc:
            fail(f"error: numeric overflow ({one_line(exc)}): an input or model value is out of "
                 "range", EXIT_BAD_INPUT)
        except MemoryError:
            fail("error: out of memory (an input is too large for this machine)", EXIT_BAD_INPUT)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"error: {where}{exc.strerror or one_line(exc)}", EXIT_BAD_INPUT)
        except Exception as exc:
            fail(f"internal error: {type(exc).__name__}: {one_line(exc)} "
                 "(run with --debug for the traceback)", EXIT_INTERNAL)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _exit_now(ctx: click.Context, message: str, code: int) -> NoReturn:
    """End after Ctrl-C or SIGTERM: the command's clean-up (``finally`` blocks, child processes)
    has run by now. The line goes out unbuffered and the interpreter's own shutdown is skipped:
    a signal that lands inside a write can leave a stream's lock taken, and the shutdown then
    waits for it forever."""
    if ctx.obj and ctx.obj.get("debug"):
        traceback.print_exc()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os.write(2, f"edgecompile: {message}\n".encode())
    os._exit(code)


#: After Ctrl-C or SIGTERM the command has this long to clean up (stop its child processes,
#: remove temporary files) before the process ends regardless: a signal that lands inside a
#: write can leave the main thread waiting on a stream's lock forever.
CLEANUP_GRACE_S = 5.0


def _interruption(signum: int) -> tuple[str, int]:
    if signum == signal.SIGINT:
        return "interrupted", EXIT_INTERRUPTED
    return f"terminated ({signal.Signals(signum).name})", 128 + signum


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Raise KeyboardInterrupt (Ctrl-C) or :class:`Terminated`, so that ``finally`` blocks run,
    and arm a watchdog that ends the process if that clean-up cannot finish."""
    signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once
    message, code = _interruption(signum)

    def give_up() -> None:
        os.write(2, f"edgecompile: {message}\n".encode())
        os._exit(code)

    watchdog = threading.Timer(CLEANUP_GRACE_S, give_up)
    watchdog.daemon = True
    watchdog.start()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _install_signal_handlers() -> dict[int, _Handler]:
    """Ctrl-C, SIGTERM and SIGHUP go through :func:`_on_signal`; returns the handlers to restore.
    A signal the caller ignores (or handles itself) is left alone."""
    previous: dict[int, _Handler] = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is None or signal.getsignal(signum) not in (signal.SIG_DFL, signal.default_int_handler):
            continue
        try:
            previous[signum] = signal.signal(signum, _on_signal)
        except ValueError:  # not the main thread
            break
    return previous


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecompile")
@click.option("--debug", is_flag=True, help="Show a traceback with errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Put trained FastGRNN/FastRNN models on microcontrollers, bit-exactly.

    \b
    Typical flow:
      edgecompile inspect model.npz --bits 8
      edgecompile evaluate model.npz --data X.npy --labels y.npy --bits 8 --calib X.npy
      edgecompile export model.npz --board uno --calib X.npy -o fw/
      edgecompile build fw/
      edgecompile verify fw/ --emulate --data X.npy --labels y.npy
    """
    from edgecompile.link.timeouts import check_environment

    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    check_environment()


for _command in (inspect, predict, evaluate, quantize, train, robustness, boards, export, build, flash, verify, fit):
    main.add_command(_command)
