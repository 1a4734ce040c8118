"""Parity between a device and the host simulator: the algorithm and its report."""

from edgecompile.verify.parity import check_model, cycle_unit, run_parity
from edgecompile.verify.report import JSON_KEYS, Divergence, ParityReport

__all__ = ["JSON_KEYS", "Divergence", "ParityReport", "check_model", "cycle_unit", "run_parity"]
