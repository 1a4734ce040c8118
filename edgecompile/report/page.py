"""The one way to write a report page: a self-contained directory with ``index.html`` and the
PNG plots beside it (relative links, no external assets).

:func:`render_page` wraps a body in the shared head and style; :func:`table` and :func:`figure`
build its parts; :func:`write_page` draws the plots with matplotlib (Agg backend, imported on
first use) and puts the directory in place atomically. A directory is replaced only when it is
empty or a report page this module wrote (its ``index.html`` carries :data:`GENERATOR`).
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from edgecompile.errors import DataError, EdgecompileError

#: The marker in every page's head; a directory whose index.html has it may be replaced.
GENERATOR = '<meta name="generator" content="edgecompile report">'

#: A plot: its file name and the function that draws it, ``draw(pyplot, path)``.
Plot = tuple[str, Callable[[Any, Path], None]]

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 1.5em 1em 0; display: inline-table; vertical-align: top; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; font-size: 0.9em; }
th { text-align: left; font-weight: normal; background: #f4f4f4; }
thead th { font-weight: bold; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(640px, 1fr));
         gap: 0.6em; align-items: start; }
figure { margin: 0; }
figure.wide { grid-column: 1 / -1; }
figcaption { font-size: 0.85em; color: #555; text-align: center; }
img { border: 1px solid #ddd; max-width: 100%; }
.ok { color: #17702a; font-weight: bold; }
.bad { color: #b00020; font-weight: bold; }
.note { color: #555; font-size: 0.9em; }
"""


def esc(text: object) -> str:
    return html.escape(str(text))


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cell(text: str, key: str | None = None, value: object = None) -> str:
    """A ``<td>`` holding ``text`` (HTML); with ``key``, the exact value rides along as
    ``data-key`` and ``data-value`` (the value as JSON) for scripts and tests."""
    if key is None:
        return f"<td>{text}</td>"
    return f'<td data-key="{esc(key)}" data-value="{esc(json.dumps(value))}">{text}</td>'


def table(rows: Iterable[Sequence[str]], *, header: Sequence[str] | None = None,
          table_id: str | None = None) -> str:
    """A table; each row's first item is its ``<th>`` (HTML), the others are ``<td>`` HTML as
    :func:`cell` makes them (plain text is wrapped in ``<td>``)."""
    head = ""
    if header is not None:
        head = "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>\n"
    body = []
    for row in rows:
        tds = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row[1:])
        body.append(f"<tr><th>{row[0]}</th>{tds}</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f"<table{ident}>\n{head}<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def figure(name: str, caption: str, fig_id: str | None = None, *, wide: bool = False) -> str:
    """A plot and its caption; ``wide`` spans the whole row of the plot grid."""
    ident = f' id="{esc(fig_id)}"' if fig_id else ""
    cls = ' class="wide"' if wide else ""
    return (f'<figure{ident}{cls}><img src="{esc(name)}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def render_page(title: str, body: str) -> str:
    """The whole page: the shared head and style around ``body`` (HTML)."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{GENERATOR}
<title>{esc(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{esc(title)}</h1>
{body}
</body>
</html>
"""


def is_report_dir(path: Path) -> bool:
    """An empty directory, or one holding a page this module wrote."""
    try:
        if not any(path.iterdir()):
            return True
        with open(path / "index.html", encoding="utf-8", errors="replace") as f:
            return GENERATOR in f.read(4096)
    except OSError:
        return False


def check_out_dir(out_dir: str | os.PathLike) -> None:
    """Refuse, before any work, a path that cannot become the page's directory: a file, a
    non-empty directory that is not a report, a parent that is not a directory."""
    out = Path(out_dir)
    if str(out_dir) == "":
        raise DataError("the report directory is an empty path")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    if out.is_dir() and not is_report_dir(out):
        raise DataError(f"{out}: a non-empty directory that is not an edgecompile report; "
                        "give a new or empty directory")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise DataError(f"{out}: {parent} is not a directory")


def write_page(out_dir: str | os.PathLike, page_html: str, plots: Sequence[Plot]) -> Path:
    """Draw ``plots`` and write ``index.html`` into ``out_dir``; returns the page's path.

    Everything is written into a temporary directory beside ``out_dir`` and then put in place
    with renames (an existing report directory is replaced whole), so a failure leaves no
    half-written page and the old report, if any, untouched.
    """
    out = Path(out_dir)
    check_out_dir(out)
    if out.is_symlink():
        out = out.resolve()
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except OSError as exc:
        raise EdgecompileError(f"{out}: cannot write ({exc.strerror or exc})") from None
    old: Path | None = None
    try:
        if plots:
            plt = pyplot()
            for name, draw in plots:
                draw(plt, tmp / name)
                plt.close("all")
        (tmp / "index.html").write_text(page_html, encoding="utf-8")
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.replace(out, old / "page")
        os.replace(tmp, out)
    except OSError as exc:
        if old is not None and (old / "page").exists() and not out.exists():
            os.replace(old / "page", out)
        raise EdgecompileError(f"{out}: cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out / "index.html"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
