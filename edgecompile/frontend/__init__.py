"""Reading what users bring: checkpoints (``.npz`` or EdgeML directories), input data, ``.ts`` files.

Everything read here is validated and becomes a :class:`~edgecompile.ir.model.FloatModel` or a
checked float array; bad input raises a one-line :class:`~edgecompile.errors.EdgecompileError`.
"""

from edgecompile.frontend.checkpoint import load_checkpoint, model_from_arrays, save_checkpoint
from edgecompile.frontend.data import load_labels, load_sequences

__all__ = ["load_checkpoint", "load_labels", "load_sequences", "model_from_arrays", "save_checkpoint"]
