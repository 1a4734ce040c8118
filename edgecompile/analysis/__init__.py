"""Reports about a model that need no device: what ``inspect`` shows (:mod:`.inspection`), and the
robustness analysis of a model before deployment: spectra and pseudospectra of the recurrent
matrix (float and quantized), cell Jacobians, accuracy under bounded input perturbation and
hidden-state growth (docs/robustness.md).

``robustness_report(model, X, y, bits, calib)`` returns a :class:`RobustnessReport`
(``.to_json()``: the JSON keys); :func:`write_report_page` writes its HTML page and plots.
"""

from edgecompile.analysis.perturbation import DEFAULT_EPS, PerturbationRow, parse_eps
from edgecompile.analysis.report_html import check_out_dir, write_report_page
from edgecompile.analysis.robustness import RobustnessReport, render_report, robustness_report
from edgecompile.analysis.spectra import MatrixStats, matrix_stats

__all__ = ["DEFAULT_EPS", "MatrixStats", "PerturbationRow", "RobustnessReport", "check_out_dir", "matrix_stats",
           "parse_eps", "render_report", "robustness_report", "write_report_page"]
