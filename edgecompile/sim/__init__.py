"""The arithmetic spec (docs/fixed-point.md) executed in NumPy: bit for bit what the device computes.

``simulate(qm, quantize_inputs(qm, X))`` gives the device's integer logits; :mod:`.nonlinear`
holds the integer nonlinearities and their tables, shared with the generated C.
"""

from edgecompile.sim.simulator import quantize_inputs, simulate

__all__ = ["quantize_inputs", "simulate"]
