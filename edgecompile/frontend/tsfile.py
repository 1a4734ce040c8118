"""Read UEA/UCR ``.ts`` time-series files (the sktime / timeseriesclassification.com format).

Supported header tags (case-insensitive): ``@problemName``, ``@timeStamps``, ``@missing``,
``@univariate``, ``@dimensions``, ``@equalLength``, ``@seriesLength``, ``@classLabel`` and
``@data``; other tags are ignored, ``#`` lines are comments. After ``@data`` every line is one
case: dimensions separated by ``:``, values inside a dimension by ``,``, then (with
``@classLabel true``) the class label as the last ``:`` field. With ``@timeStamps true`` values
are written ``(time,value)``; the times are dropped and the values are taken in file order
(edgecompile assumes regular sampling, as the device does).

Missing values (``?`` or ``NaN``) are filled per channel by sample-and-hold: a gap takes the last
observed value, leading gaps take the first observed one. That is what a sensor loop on a
device would feed the model, and it keeps filled values inside the data's range.

Variable-length series are **padded at the front** to a common length (:func:`pad_series`):
the classifier reads only the last hidden state, so the real end of every series must be the
last step the model sees; padding at the end would make it read padding instead. By default
the pad repeats the series' first frame ("edge"): the padded values stay inside the data's
range (a zero can lie far outside it, e.g. the first LPC cepstrum coefficient is about 1.5),
so they do not distort the normalisation statistics or the int8/int16 input ranges chosen by
the quantizer, and they carry no information that could leak the series length.
``mode="zero"`` pads with zeros instead. Series longer than the requested length keep their
last ``length`` frames.

Every problem raises :class:`~edgecompile.errors.DataError` with one line naming the file, the
line and what is wrong.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecompile.errors import DataError
from edgecompile.files import open_regular

PAD_MODES = ("edge", "zero")
_MISSING = {"?", "nan"}
_TUPLE = re.compile(r"\(([^(),]*),([^()]*)\)")


@dataclass
class TsDataset:
    """The cases of one ``.ts`` file: ``series[i]`` is float64 ``[T_i, D]`` (missing filled)."""

    series: list[np.ndarray]
    labels: np.ndarray | None  # int64 indices into class_labels, or None without @classLabel
    class_labels: list[str] | None
    problem_name: str | None = None
    missing_filled: int = 0  # how many missing values were filled

    @property
    def dims(self) -> int:
        return int(self.series[0].shape[1])

    @property
    def lengths(self) -> np.ndarray:
        return np.array([s.shape[0] for s in self.series], dtype=np.int64)

    def padded(self, length: int | None = None, mode: str = "edge") -> np.ndarray:
        """All cases as one float64 array ``[N, T, D]`` (see :func:`pad_series`)."""
        return pad_series(self.series, length, mode)


def pad_series(series: list[np.ndarray], length: int | None = None, mode: str = "edge") -> np.ndarray:
    """Stack ``[T_i, D]`` series into ``[N, T, D]``, padding at the front.

    ``length`` defaults to the longest series; longer series keep their last ``length`` frames.
    ``mode``: ``"edge"`` repeats the first frame, ``"zero"`` pads with zeros.
    """
    if mode not in PAD_MODES:
        raise DataError(f"padding mode {mode!r}, expected one of {', '.join(PAD_MODES)}")
    if not series:
        raise DataError("no series to pad")
    T = max(s.shape[0] for s in series) if length is None else int(length)
    if T < 1:
        raise DataError(f"padding length {T}, expected at least 1")
    D = series[0].shape[1]
    out = np.zeros((len(series), T, D), dtype=np.float64)
    for i, s in enumerate(series):
        s = s[-T:]
        n = s.shape[0]
        out[i, T - n:] = s
        if mode == "edge" and n < T:
            out[i, : T - n] = s[0]
    return out


def read_ts(path: str | os.PathLike) -> TsDataset:
    """Parse a ``.ts`` file; raises :class:`DataError` (one line) for anything malformed."""
    p = Path(path)
    try:
        with open_regular(p, DataError) as fh:
            text = fh.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not a text .ts file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror})") from None
    return _Parser(str(p)).parse(text)


@dataclass
class _Header:
    """The header tags read so far (``None``: not given)."""

    problemname: str | None = None
    timestamps: bool | None = None
    missing: bool | None = None
    univariate: bool | None = None
    equallength: bool | None = None
    dimensions: int | None = None
    serieslength: int | None = None
    classlabels: list[str] | None = None


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.header = _Header()
        self.lineno = 0

    def error(self, msg: str) -> DataError:
        return DataError(f"{self.source}:{self.lineno}: {msg}")

    def boolean(self, tag: str, value: str) -> bool:
        v = value.strip().lower()
        if v not in ("true", "false"):
            raise self.error(f"@{tag} is {value.strip()!r}, expected true or false")
        return v == "true"

    def integer(self, tag: str, value: str) -> int:
        try:
            n = int(value.strip())
        except ValueError:
            n = 0
        if n < 1:
            raise self.error(f"@{tag} is {value.strip()!r}, expected a positive integer")
        return n

    def parse(self, text: str) -> TsDataset:
        lines = text.splitlines()
        in_data = False
        series: list[np.ndarray] = []
        raw_labels: list[str] = []
        filled = 0
        dims: int | None = None
        for self.lineno, line in enumerate(lines, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if not line.startswith("@"):
                    raise self.error(f"expected a header tag (@...) or @data, got {line[:40]!r}")
                in_data = self._tag(line)
                if in_data:
                    dims = self._declared_dims()
                continue
            case, label, nmissing = self._case(line, dims)
            dims = case.shape[1]
            series.append(case)
            filled += nmissing
            if label is not None:
                raw_labels.append(label)
        self.lineno = len(lines)
        if not in_data:
            raise self.error("no @data section")
        if not series:
            raise self.error("no cases after @data")
        if self.header.equallength is True:
            lengths = {s.shape[0] for s in series}
            if len(lengths) > 1:
                raise self.error(
                    f"@equalLength true but series lengths range {min(lengths)}..{max(lengths)}"
                )
        classes = self.header.classlabels
        labels = None
        if classes is not None:
            index = {c: i for i, c in enumerate(classes)}
            labels = np.array([index[c] for c in raw_labels], dtype=np.int64)
        return TsDataset(
            series=series,
            labels=labels,
            class_labels=list(classes) if classes is not None else None,
            problem_name=self.header.problemname,
            missing_filled=filled,
        )

    def _tag(self, line: str) -> bool:
        """Record one header line; True when it is @data."""
        parts = line[1:].split(None, 1)
        tag = parts[0].lower() if parts else ""
        value = parts[1] if len(parts) > 1 else ""
        if tag == "data":
            return True
        if tag == "problemname":
            self.header.problemname = value.strip()
        elif tag in ("timestamps", "missing", "univariate", "equallength"):
            setattr(self.header, tag, self.boolean(tag, value))
        elif tag in ("dimensions", "dimension", "serieslength"):
            setattr(self.header, "dimensions" if tag.startswith("dim") else tag, self.integer(tag, value))
        elif tag == "classlabel":
            words = value.split()
            if not words:
                raise self.error("@classLabel needs true (followed by the labels) or false")
            if self.boolean(tag, words[0]):
                if len(words) < 2:
                    raise self.error("@classLabel true but no class labels listed")
                if len(set(words[1:])) != len(words) - 1:
                    raise self.error("@classLabel lists a label twice")
                self.header.classlabels = words[1:]
        elif tag == "targetlabel":
            if value.split() and self.boolean(tag, value.split()[0]):
                raise self.error(
                    "@targetLabel true: regression .ts files are not supported (edgecompile "
                    "trains classifiers)"
                )
        return False

    def _declared_dims(self) -> int | None:
        univariate = self.header.univariate
        dims = self.header.dimensions
        if univariate is True:
            if dims not in (None, 1):
                raise self.error(f"@univariate true but @dimensions {dims}")
            return 1
        return dims

    def _case(self, line: str, dims: int | None) -> tuple[np.ndarray, str | None, int]:
        fields = line.split(":")
        label = None
        classes = self.header.classlabels
        if classes is not None:
            if len(fields) < 2:
                raise self.error("case has no class label (expected values:...:label)")
            label = fields.pop().strip()
            if label not in classes:
                raise self.error(
                    f"class label {label!r} is not declared in @classLabel ({' '.join(classes)})"
                )
        if dims is not None and len(fields) != dims:
            raise self.error(f"case has {len(fields)} dimensions, expected {dims}")
        channels = [self._values(f, d) for d, f in enumerate(fields)]
        lengths = {len(c) for c in channels}
        if len(lengths) > 1:
            raise self.error(
                f"the dimensions of one case have different lengths ({min(lengths)}..{max(lengths)})"
            )
        length = lengths.pop()
        wanted = self.header.serieslength
        if wanted is not None and self.header.equallength is not False and length != wanted:
            raise self.error(f"series has {length} values, @seriesLength says {wanted}")
        arr = np.array(channels, dtype=np.float64).T  # [T, D]
        missing = int(np.isnan(arr).sum())
        if missing:
            arr = self._fill(arr)
        return arr, label, missing

    def _values(self, field: str, d: int) -> list[float]:
        field = field.strip()
        if not field:
            raise self.error(f"dimension {d} is empty")
        if self.header.timestamps is True or field.startswith("("):
            tokens = [m.group(2) for m in _TUPLE.finditer(field)]
            if not tokens or _TUPLE.sub("", field).replace(",", "").strip():
                raise self.error(f"dimension {d}: expected (time,value) pairs, got {field[:40]!r}")
        else:
            tokens = field.split(",")
        out = []
        for tok in tokens:
            tok = tok.strip()
            if tok.lower() in _MISSING:
                out.append(math.nan)
                continue
            try:
                v = float(tok)
            except ValueError:
                raise self.error(f"dimension {d}: {tok[:30]!r} is not a number") from None
            if math.isinf(v):
                raise self.error(f"dimension {d}: infinite value {tok!r}")
            out.append(v)
        return out

    def _fill(self, arr: np.ndarray) -> np.ndarray:
        """Sample-and-hold: carry the last observed value forward, the first one backward."""
        for d in range(arr.shape[1]):
            col = arr[:, d]
            seen = ~np.isnan(col)
            if not seen.any():
                raise self.error(f"dimension {d} has only missing values")
            idx = np.where(seen, np.arange(col.size), 0)
            np.maximum.accumulate(idx, out=idx)
            first = int(np.argmax(seen))
            idx[:first] = first
            arr[:, d] = col[idx]
        return arr
