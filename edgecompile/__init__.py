"""edgecompile: trained FastGRNN/FastRNN checkpoints to bit-exact fixed-point C on microcontrollers.

The stages, in the order data flows through them::

    frontend   checkpoint / data / .ts files  -> FloatModel            (edgecompile.frontend)
    quant      FloatModel + calibration        -> QuantizedModel        (edgecompile.quant, edgecompile.ir)
    sim        QuantizedModel + inputs         -> the device's integers (edgecompile.sim)
    codegen    QuantizedModel                  -> C library files       (edgecompile.codegen)
    targets    library + board                 -> PlatformIO project, firmware, flash (edgecompile.targets)
    link       firmware on a board/emulator    -> serial protocol       (edgecompile.link, edgecompile.emulators)
    verify     host vs device                  -> parity report         (edgecompile.pipeline.verify)

The names below are the public API; each is imported on first use, so ``import edgecompile``
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "load_checkpoint": "edgecompile.frontend.checkpoint",
    "save_checkpoint": "edgecompile.frontend.checkpoint",
    "load_sequences": "edgecompile.frontend.data",
    "load_labels": "edgecompile.frontend.data",
    "FloatModel": "edgecompile.ir.model",
    "QuantizedModel": "edgecompile.ir.qmodel",
    "load_qmodel": "edgecompile.ir.qmodel",
    "save_qmodel": "edgecompile.ir.qmodel",
    "forward": "edgecompile.reference",
    "quantize": "edgecompile.quant.quantizer",
    "quantize_inputs": "edgecompile.sim.simulator",
    "simulate": "edgecompile.sim.simulator",
    "render_library": "edgecompile.codegen.render",
    "export_project": "edgecompile.pipeline.export",
    "build_project": "edgecompile.targets.build",
    "flash_project": "edgecompile.targets.flash",
    "verify_project": "edgecompile.pipeline.verify",
    "evaluate": "edgecompile.pipeline.evaluate",
    "train": "edgecompile.train",
    "TrainConfig": "edgecompile.train",
    "EdgecompileError": "edgecompile.errors",
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'edgecompile' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
