"""Quantization: a FloatModel becomes the QuantizedModel that the simulator and the C implement.

``quantize(model, bits, calib)`` chooses Q formats from calibration ranges, proves or saturates
every int32 bound, and picks low-rank and sparse storage by a cost model.
"""

from edgecompile.quant.bounds import Bound, OverflowBound, bound_report, check_bounds
from edgecompile.quant.quantizer import CalibrationWarning, quantize

__all__ = ["Bound", "CalibrationWarning", "OverflowBound", "bound_report", "check_bounds", "quantize"]
