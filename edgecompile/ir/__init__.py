"""The two model representations every stage passes along: the float model and the quantized model.

:class:`FloatModel` is what a checkpoint describes (float64 arrays, validated);
:class:`QuantizedModel` is what the device computes (integers, Q formats, tables), saved as JSON.
"""

from edgecompile.ir.model import ERNNParams, FastGRNNParams, FastRNNParams, FloatModel, Matrix
from edgecompile.ir.qmodel import QuantizedModel, load_qmodel, save_qmodel

__all__ = ["ERNNParams", "FastGRNNParams", "FastRNNParams", "FloatModel", "Matrix", "QuantizedModel", "load_qmodel",
           "save_qmodel"]
