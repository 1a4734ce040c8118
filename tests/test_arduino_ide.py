"""The model library as the Arduino IDE meets it: the examples/ sketch, the "Add .ZIP Library"
zip, and the sketch compiled the IDE's way (Debian's arduino-builder against Debian's AVR core)
and run under simavr, printing the logits that `edgecompile predict` gives."""

from __future__ import annotations

import io
import os
import re
import select
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecompile.codegen.arduino import (
    DEFAULT_STEPS,
    ZIP_DATE,
    example_sequence,
    example_sketch_files,
    library_zip,
    sketch_name,
)
from edgecompile.errors import CodegenError
from edgecompile.ir.qmodel import load_qmodel
from edgecompile.sim.simulator import quantize_inputs
from tests.helpers.models import make_arrays

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / "edgecompile"
JV = ROOT / "examples" / "japanese_vowels"
ARDUINO_AVR = Path("/usr/share/arduino/hardware")
#: Debian's avr-gcc 5.4 defines DECIMAL_DIG for C only; the core's WString.cpp needs it in C++
#: (the same define as the offline PlatformIO platform's arduino framework).
CORE_FIX = "compiler.cpp.extra_flags=-DDECIMAL_DIG=__DECIMAL_DIG__"


def run(*args: object, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    exe = EXE if EXE.exists() else shutil.which("edgecompile")
    assert exe, "the edgecompile console script is not installed (pip install -e .)"
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def export_library(tmp: Path, model: Path, name: str, bits: int, calib: Path | None) -> tuple[dict[str, bytes], Path]:
    """The files of lib/<name>/ of an `edgecompile export` project, and the project."""
    proj = tmp / f"{name}_proj"
    args = ["export", model, "--board", "uno", "--bits", bits, "--name", name, "-o", proj]
    if calib is not None:
        args += ["--calib", calib]
    res = run(*args, cwd=tmp)
    assert res.returncode == 0, res.stderr
    lib = proj / "lib" / name
    files = {p.relative_to(lib).as_posix(): p.read_bytes() for p in sorted(lib.rglob("*")) if p.is_file()}
    return files, proj


def code_only(text: str) -> str:
    """C++ text without comments and string literals."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def small_qmodel(tmp: Path, cell: str = "FastRNN", bits: int = 16, norm: str | None = "D", T: int | None = None):
    from edgecompile.frontend.checkpoint import load_checkpoint
    from edgecompile.quant.quantizer import quantize

    path = save_npz(tmp / f"{cell}_{bits}.npz", make_arrays(cell, D=5, H=7, C=3, T=T, norm=norm, seed=bits))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no calibration data: assumed ranges are fine here
        return quantize(load_checkpoint(path), bits, None), path


# -- the sketch and the zip, on the host -------------------------------------------------------

def test_sketch_name():
    assert sketch_name("jvowels") == "JvowelsBasic"
    assert sketch_name("kws_model") == "KwsModelBasic"
    assert sketch_name("a__b_") == "ABBasic"
    with pytest.raises(CodegenError):
        sketch_name("9lives")


def test_sketch_embeds_host_quantized_inputs_and_uses_the_integer_path(tmp_path):
    qm = load_qmodel(export_library(tmp_path, JV / "model.npz", "jvowels", 8, JV / "X_calib.npy")[1]
                     / "model.qmodel.json")
    X = np.load(JV / "X_test.npy")
    files = example_sketch_files(qm, "jvowels", X[5:9])
    assert list(files) == ["examples/JvowelsBasic/JvowelsBasic.ino"]
    text = files["examples/JvowelsBasic/JvowelsBasic.ino"].decode("ascii")
    assert files == example_sketch_files(qm, "jvowels", X[5])  # deterministic; the first sequence
    code = code_only(text)
    assert "jvowels_step_float" not in code and "step_float" not in code
    for call in ("jvowels_reset(", "jvowels_step(", "jvowels_logits(", "Serial.begin(115200)"):
        assert call in code
    body = code[code.index("example_x_q[EXAMPLE_STEPS]"):code.index("};")]
    rows = [[int(v) for v in r.split(",")] for r in re.findall(r"\{([^{}]+)\}", body)]
    assert np.array_equal(np.array(rows), quantize_inputs(qm, X[5:6])[0])
    assert f"#define EXAMPLE_STEPS {X.shape[1]}u" in text
    for word in ("issue", "helper", "session"):
        assert word not in text.lower()


def test_sketch_without_data_runs_raw_zeros(tmp_path):
    qm, _ = small_qmodel(tmp_path)
    x_q, source = example_sequence(qm)
    assert x_q.shape == (DEFAULT_STEPS, 5)
    assert np.array_equal(x_q, quantize_inputs(qm, np.zeros((1, DEFAULT_STEPS, 5)))[0])
    assert "zeros" in source
    qm_td, _ = small_qmodel(tmp_path, "FastGRNN", 8, "TD", T=4)
    assert example_sequence(qm_td)[0].shape == (4, 5)


def test_sketch_refuses_data_that_does_not_fit(tmp_path):
    qm, _ = small_qmodel(tmp_path)
    with pytest.raises(CodegenError, match="D=4"):
        example_sketch_files(qm, "m", np.zeros((3, 4)))
    with pytest.raises(CodegenError, match="NaN"):
        example_sketch_files(qm, "m", np.full((3, 5), np.nan))
    with pytest.raises(CodegenError, match="shape"):
        example_sketch_files(qm, "m", np.zeros(5))
    qm_td, _ = small_qmodel(tmp_path, "FastGRNN", 8, "TD", T=4)
    with pytest.raises(CodegenError, match="T=3"):
        example_sketch_files(qm_td, "m", np.zeros((3, 5)))


def test_int16_minimum_is_written_as_a_c_expression(tmp_path):
    qm, _ = small_qmodel(tmp_path)
    text = example_sketch_files(qm, "m", np.full((2, 5), -1e9))["examples/MBasic/MBasic.ino"].decode()
    assert "-32767 - 1" in text and "-32768" not in code_only(text)


def test_library_zip_layout():
    lib = {"src/m.h": b"h", "library.properties": b"name=m\n", "examples/MBasic/MBasic.ino": b"ino",
           "src/m.c": b"c" * 5000}
    data = library_zip(lib, "m")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names == sorted(names)
        assert all(n.startswith("m/") for n in names)
        assert {n for n in names if not n.endswith("/")} == {f"m/{k}" for k in lib}
        assert {"m/", "m/src/", "m/examples/", "m/examples/MBasic/"} <= set(names)
        for info in zf.infolist():
            assert info.date_time == ZIP_DATE
        assert {k: zf.read(f"m/{k}") for k in lib} == lib
    for bad in ("../x", "/abs", "a\\b", "a/./b", ""):
        with pytest.raises(CodegenError):
            library_zip({bad: b"x"}, "m")
    with pytest.raises(CodegenError):
        library_zip({}, "m")


_paths = st.lists(st.from_regex(r"[a-z]{1,6}(/[a-z]{1,6}){0,2}\.[ch]", fullmatch=True), min_size=1,
                  max_size=6, unique=True)


@settings(max_examples=40, deadline=None)
@given(paths=_paths, payload=st.binary(max_size=300), data=st.data())
def test_library_zip_is_reproducible_and_round_trips(paths, payload, data):
    files = {p: payload + p.encode() for p in paths}
    shuffled = dict(data.draw(st.permutations(list(files.items()))))
    blob = library_zip(files, "lib_x")
    assert library_zip(shuffled, "lib_x") == blob
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert {n[len("lib_x/"):]: zf.read(n) for n in zf.namelist() if not n.endswith("/")} == files


# -- compiled the Arduino IDE's way, run under simavr -------------------------------------------

def _need_arduino_builder() -> None:
    for tool in ("arduino-builder", "arduino-ctags", "avr-gcc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install arduino-builder arduino-ctags arduino-core-avr)")
    if not (ARDUINO_AVR / "arduino" / "avr" / "cores" / "arduino").is_dir():
        pytest.skip("Debian's Arduino AVR core is missing (apt-get install arduino-core-avr)")


def arduino_builder(sketch: Path, libraries: Path, build: Path) -> Path:
    """Compile ``sketch`` as the Arduino IDE 1.8 does for an Uno; the ELF."""
    build.mkdir(parents=True)
    tools = build.parent / "tools"
    tools.mkdir(exist_ok=True)
    cmd = ["arduino-builder", "-compile", "-hardware", str(ARDUINO_AVR),
           "-hardware", "/usr/share/arduino-builder",  # Debian's ctags recipe (tools.ctags.pattern)
           "-tools", str(tools), "-libraries", str(libraries), "-fqbn", "arduino:avr:uno",
           "-build-path", str(build), "-warnings", "all", "-prefs", CORE_FIX, str(sketch)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # Only the Arduino core may warn: the library and the sketch compile clean.
    ours = [ln for ln in (res.stdout + res.stderr).splitlines()
            if "warning" in ln and "/usr/share/arduino/" not in ln]
    assert ours == [], "\n".join(ours)
    return build / f"{sketch.name}.elf"


def serial_output(elf: Path, last: str, timeout_s: float = 30.0) -> str:
    """What the firmware writes to UART0 under simavr, up to the line starting with ``last``.

    The pty is read without pyserial (opening it with pyserial flushes what was already sent)."""
    from edgecompile.emulators.process import run_simavr

    with run_simavr(elf) as emu:
        fd = os.open(emu.url, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            buf = b""
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.1)
                if ready:
                    buf += os.read(fd, 4096)
                text = buf.decode("ascii", "replace")
                if any(ln.startswith(last) for ln in text.splitlines()) and text.endswith("\n"):
                    return text
            raise AssertionError(f"no {last!r} line within {timeout_s} s: {buf!r}")
        finally:
            os.close(fd)


@pytest.mark.slow
def test_example_sketch_compiles_with_arduino_builder_and_prints_predict_logits(tmp_path):
    """Three libraries (int8 FastGRNN with T*D normalisation and real data, int16 FastRNN with
    saturating data, int16 FastGRNN without normalisation on zeros), each installed from its zip
    into a sketchbook as the IDE does, compiled by arduino-builder and run under simavr."""
    _need_arduino_builder()
    calib_none: Path | None = None
    rng = np.random.default_rng(3)
    X_rnn = rng.normal(0.0, 1.0, (1, 9, 5))
    X_rnn[0, 2, :] = 1e6
    X_rnn[0, 3, :] = -1e6
    cases = [
        ("jvowels", JV / "model.npz", 8, JV / "X_calib.npy", np.load(JV / "X_test.npy")[7:8]),
        ("rnn16", save_npz(tmp_path / "rnn.npz", make_arrays("FastRNN", D=5, H=7, C=3, seed=4)), 16,
         calib_none, X_rnn),
        ("grnn_raw", save_npz(tmp_path / "grnn.npz", make_arrays("FastGRNN", D=5, H=6, C=4, norm=None, seed=5)),
         16, calib_none, None),
    ]
    sketchbook = tmp_path / "sketchbook" / "libraries"
    sketchbook.mkdir(parents=True)
    for name, model, bits, calib, X in cases:
        lib, proj = export_library(tmp_path, model, name, bits, calib)
        qm = load_qmodel(proj / "model.qmodel.json")
        lib.update(example_sketch_files(qm, name, X))
        with zipfile.ZipFile(io.BytesIO(library_zip(lib, name))) as zf:  # "Add .ZIP Library"
            zf.extractall(sketchbook)
        sketch = sketchbook / name / "examples" / sketch_name(name) / f"{sketch_name(name)}.ino"
        elf = arduino_builder(sketch, sketchbook, tmp_path / "build" / name)

        out = serial_output(elf, "time_us:")
        lines = {ln.split(":", 1)[0]: ln.split(":", 1)[1].split() for ln in out.splitlines() if ":" in ln}
        device_q = np.array([int(v) for v in lines["logits_q"]], dtype=np.int64)
        device = np.array([float(v) for v in lines["logits"]])

        data = tmp_path / f"{name}_x.npy"
        np.save(data, X if X is not None else np.zeros((1, qm.seq_len or DEFAULT_STEPS, qm.input_dim)))
        # the host prediction of the exported project: its quantized model, as the board runs it
        res = run("predict", proj, "--data", data, "--out", tmp_path / f"{name}_p.npy", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        host = np.load(tmp_path / f"{name}_p.npy")[0]
        host_q = host * float(2 ** qm.logit_frac)
        assert np.array_equal(host_q, np.rint(host_q))
        assert device_q.tolist() == host_q.astype(np.int64).tolist(), (name, out)  # bit-exact
        assert int(lines["class"][0]) == int(np.argmax(host))
        np.testing.assert_allclose(device, host, rtol=1e-5, atol=1e-5)  # float32 printing on AVR
