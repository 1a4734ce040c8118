"""Report pages people look at: one self-contained HTML page with PNG plots beside it.

:mod:`.page` is the one way to write such a page (head and style, tables, figures, atomic
writing of the directory); :func:`write_verify_report` is the page of ``verify --report``,
:func:`write_evaluate_report` that of ``evaluate --report``; the robustness page
(:mod:`edgecompile.analysis.report_html`) uses the same skeleton.
"""

from edgecompile.report.evaluate_page import write_evaluate_report
from edgecompile.report.page import check_out_dir, write_page
from edgecompile.report.verify_page import write_verify_report

__all__ = ["check_out_dir", "write_evaluate_report", "write_page", "write_verify_report"]
