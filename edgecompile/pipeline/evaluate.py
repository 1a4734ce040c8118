"""`evaluate`/`predict`/`inspect` on the host: float reference vs the bit-exact integer simulator.

A command's MODEL is a float checkpoint (quantized here, ``--bits`` default 8), a quantized model
(``.json`` from ``edgecompile quantize`` or an export), or an exported project directory (read
through its manifest): the last two carry their own bit width and formats, so the host computes
exactly what was flashed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecompile.errors import DataError
from edgecompile.ir.model import DEPLOYABLE_CELLS, FloatModel, Layout
from edgecompile.ir.qmodel import QuantizedModel
from edgecompile.quant.quantizer import CalibrationWarning, quantize
from edgecompile.reference import forward
from edgecompile.sim.simulator import predict_quantized

Warn = Callable[[str], object]  # a one-line printer

#: ``--bits`` when it is not given and the model is a float checkpoint.
DEFAULT_BITS = 8

#: Why a quantized model or project has no float accuracy.
NO_FLOAT_NOTE = "{what} carries no float model (evaluate its checkpoint for the float numbers)"


@dataclass(frozen=True)
class ModelSource:
    """What a MODEL argument holds: a float model, a fixed quantized model, or both (a project)."""

    path: str
    kind: str  # "checkpoint", "qmodel" (a .json) or "project" (an exported directory)
    float_model: FloatModel | None
    qmodel: QuantizedModel | None  # fixed: its bits and formats are what was (or will be) flashed

    @property
    def what(self) -> str:
        return {"checkpoint": "the checkpoint", "qmodel": "the quantized model",
                "project": "the project"}[self.kind] + f" {self.path}"


def is_project_dir(path: str | Path) -> bool:
    from edgecompile.targets.manifest import MANIFEST_FILE

    p = Path(path)
    return p.is_dir() and (p / MANIFEST_FILE).exists()


def load_project_models(root: str | Path) -> tuple[Any, QuantizedModel, FloatModel | None]:
    """An exported project's manifest, quantized model and float model (None when export had
    none); each model must be the one the manifest names."""
    from edgecompile.frontend.checkpoint import load_checkpoint
    from edgecompile.ir.qmodel import load_qmodel
    from edgecompile.targets.manifest import MANIFEST_FILE, read_manifest

    root = Path(root)
    manifest = read_manifest(root)
    qm = load_qmodel(root / manifest.qmodel)
    if qm.quantized_sha256() != manifest.qmodel_sha256:
        raise DataError(f"{root / manifest.qmodel} is not the quantized model {MANIFEST_FILE} names "
                        f"(sha256 {qm.quantized_sha256()[:12]}..., manifest "
                        f"{manifest.qmodel_sha256[:12]}...): export the project again")
    fm = None
    if manifest.checkpoint is not None:
        fm = load_checkpoint(root / manifest.checkpoint)
        if fm.sha256 != manifest.model_sha256:
            raise DataError(f"{root / manifest.checkpoint} is not the float model {MANIFEST_FILE} "
                            f"names (sha256 {fm.sha256[:12]}..., manifest "
                            f"{manifest.model_sha256[:12]}...): export the project again")
    return manifest, qm, fm


def load_model_source(path: str, layout: Layout | None = None, warn: Warn | None = None) -> ModelSource:
    """Read MODEL: an exported project directory (it has an ``edgecompile-manifest.json``), a
    quantized model (``.json``), or else a float checkpoint (``.npz`` or a directory of ``.npy``;
    ``layout`` and ``warn`` as :func:`~edgecompile.frontend.checkpoint.load_checkpoint` takes them)."""
    from edgecompile.frontend.checkpoint import load_checkpoint

    if layout is not None and (is_project_dir(path) or str(path).endswith(".json")):
        raise DataError(f"--layout applies to a checkpoint, not to {path} (a project or quantized model)")
    if is_project_dir(path):
        _, qm, fm = load_project_models(path)
        return ModelSource(path, "project", fm, qm)
    if str(path).endswith(".json"):
        from edgecompile.ir.qmodel import load_qmodel

        return ModelSource(path, "qmodel", None, load_qmodel(path))
    return ModelSource(path, "checkpoint", load_checkpoint(path, layout=layout, warn=warn), None)


def resolve_bits(source: ModelSource, bits: str | None, calib: str | None) -> str:
    """The ``--bits`` a command runs at ("float", "8" or "16"): the given one, else 8 for a
    checkpoint (float for a cell that does not quantize yet, see ``DEPLOYABLE_CELLS``) and the
    quantized model's own width otherwise. A fixed quantized model refuses
    ``--calib`` and a ``--bits`` width other than its own (a :class:`DataError`)."""
    qm = source.qmodel
    if qm is None:
        fm = source.float_model
        if bits is None and fm is not None and fm.cell not in DEPLOYABLE_CELLS:
            return "float"  # a cell without a fixed-point kernel runs its float reference
        return bits or str(DEFAULT_BITS)
    if calib is not None:
        raise DataError(f"--calib does not apply: {source.what} is already quantized "
                        f"(int{qm.bits}, its formats are fixed)")
    if bits is None or bits == str(qm.bits):
        return str(qm.bits)
    if bits == "float":
        if source.float_model is None:
            raise DataError(f"--bits float: {NO_FLOAT_NOTE.format(what=source.what)}")
        return bits
    raise DataError(f"--bits {bits} conflicts with {source.what}: it is quantized at int{qm.bits} "
                    f"(give --bits {qm.bits} or leave --bits out)")


def load_data(path: str, source: ModelSource) -> np.ndarray:
    """Raw inputs checked against the model (D, T; normalisation through the float model)."""
    from edgecompile.frontend.data import load_sequences

    if source.float_model is not None:
        return load_sequences(path, source.float_model)
    qm = source.qmodel
    assert qm is not None
    X = load_sequences(path)
    if X.shape[2] != qm.input_dim:
        raise DataError(f"{path}: D={X.shape[2]} but the model takes D={qm.input_dim}")
    if qm.seq_len is not None and X.shape[1] != qm.seq_len:
        raise DataError(f"{path}: T={X.shape[1]} but the model's mean/std cover T={qm.seq_len} steps")
    return X


def quantize_for_cli(model: FloatModel, bits: int, calib: np.ndarray | None,
                     warn: Warn | None = None, profile: str | None = None) -> QuantizedModel:
    """Quantize, routing the no-calibration warning to ``warn`` (a one-line printer);
    ``profile`` None is the command line's default, auto."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibrationWarning)
        qm = quantize(model, bits, calib, profile=profile or "auto")
    for w in caught:
        if warn is not None and issubclass(w.category, CalibrationWarning):
            warn(f"warning: {w.message}")
    return qm


def quantized_model(source: ModelSource, bits: str, calib: np.ndarray | None,
                    warn: Warn | None = None, profile: str | None = None) -> QuantizedModel:
    """The source's fixed quantized model, or its float model quantized at ``bits``."""
    if source.qmodel is not None:
        from edgecompile.quant.profile import check_fixed_profile

        check_fixed_profile(source.qmodel, profile, source.what)
        return source.qmodel
    assert source.float_model is not None
    return quantize_for_cli(source.float_model, int(bits), calib, warn, profile)


def predict_logits(model: FloatModel | ModelSource, X: np.ndarray, bits: str, calib: np.ndarray | None,
                   warn: Warn | None = None, profile: str | None = None) -> np.ndarray:
    """Logits of the float reference (``bits='float'``) or the dequantized integer simulator."""
    source = model if isinstance(model, ModelSource) else ModelSource("", "checkpoint", model, None)
    if bits == "float":
        assert source.float_model is not None
        return forward(source.float_model, X)
    return predict_quantized(quantized_model(source, bits, calib, warn, profile), X)


def evaluate(model: FloatModel | ModelSource, X: np.ndarray, y: np.ndarray, bits: str,
             calib: np.ndarray | None, warn: Warn | None = None,
             profile: str | None = None) -> dict[str, Any]:
    """Accuracy of the float model and (for 8/16) the quantized one, and their agreement.

    Every key is always present: ``bits`` is the integer weight width, or None when only the
    float model is evaluated (``--bits float``); ``accuracy_float`` and the comparisons are None
    (with a ``note``) for a quantized model without its float model.
    """
    source = model if isinstance(model, ModelSource) else ModelSource("", "checkpoint", model, None)
    fm = source.float_model
    ref = forward(fm, X) if fm is not None else None
    report: dict[str, Any] = {
        "n": int(X.shape[0]), "bits": None if bits == "float" else int(bits),
        "source": source.kind,
        "accuracy_float": None if ref is None else float((ref.argmax(1) == y).mean()),
        "accuracy_quantized": None, "argmax_agreement": None, "max_abs_logit_error": None,
        "quantization": None, "calibration": None, "profile": None,
        "note": None if fm is not None else NO_FLOAT_NOTE.format(what=source.what),
    }
    if bits == "float":
        return report
    qm = quantized_model(source, bits, calib, warn, profile)
    q = predict_quantized(qm, X)
    report.update(
        accuracy_quantized=float((q.argmax(1) == y).mean()),
        argmax_agreement=None if ref is None else float((q.argmax(1) == ref.argmax(1)).mean()),
        max_abs_logit_error=None if ref is None else float(np.abs(q - ref).max()),
        quantization=qm.summary(),
        calibration=qm.calibration.get("method"),
        profile=qm.profile,
    )
    return report


def render_evaluation(report: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.5f}"

    lines = [f"{'sequences':<22}{report['n']}",
             f"{'accuracy (float)':<22}{pct(report['accuracy_float'])}"]
    if report["bits"] is not None:
        lines += [
            f"{'accuracy (int' + str(report['bits']) + ')':<22}{pct(report['accuracy_quantized'])}",
            f"{'argmax agreement':<22}{pct(report['argmax_agreement'])}",
            f"{'max |logit error|':<22}{num(report['max_abs_logit_error'])}",
            f"{'quantization':<22}{report['quantization']}",
        ]
    if report.get("note"):
        lines.append(f"note: {report['note']}")
    return "\n".join(lines)
