"""The commands' work, stage after stage: evaluate on the host, export a project, verify a device.

These functions tie the stages together (frontend → quant → codegen → targets → link → verify);
the CLI calls them and nothing else.
"""

from edgecompile.pipeline.evaluate import evaluate, predict_logits
from edgecompile.pipeline.export import ExportResult, export_project
from edgecompile.pipeline.verify import verify_project

__all__ = ["ExportResult", "evaluate", "export_project", "predict_logits", "verify_project"]
