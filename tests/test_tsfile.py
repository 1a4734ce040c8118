"""UEA/UCR .ts parsing: header, multivariate, variable length, missing values, malformed files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecompile.errors import DataError
from edgecompile.frontend.tsfile import pad_series, read_ts

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "japanese_vowels"
EDGECOMPILE = Path(sys.executable).parent / "edgecompile"

HEADER = """# a comment
@problemName Toy
@timeStamps false
@missing {missing}
@univariate false
@dimensions 2
@equalLength false
@classLabel true up down
@data
"""


def write(tmp_path: Path, text: str, name: str = "toy.ts") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_multivariate_variable_length(tmp_path):
    p = write(tmp_path, HEADER.format(missing="false")
              + "1,2,3:4,5,6:up\n\n7,8:9,10:down\n1.5e0,-2:3,4:up\n")
    ds = read_ts(p)
    assert ds.problem_name == "Toy" and ds.class_labels == ["up", "down"]
    assert ds.labels.tolist() == [0, 1, 0]
    assert ds.lengths.tolist() == [3, 2, 2] and ds.dims == 2
    np.testing.assert_array_equal(ds.series[0], [[1, 4], [2, 5], [3, 6]])
    X = ds.padded()  # front padding, repeating the first frame
    assert X.shape == (3, 3, 2)
    np.testing.assert_array_equal(X[1], [[7, 9], [7, 9], [8, 10]])
    np.testing.assert_array_equal(ds.padded(mode="zero")[1], [[0, 0], [7, 9], [8, 10]])
    # longer series keep their last frames
    np.testing.assert_array_equal(pad_series(ds.series, 2)[0], [[2, 5], [3, 6]])


def test_missing_values_sample_and_hold(tmp_path):
    p = write(tmp_path, HEADER.format(missing="true") + "?,2,?,NaN,5:1,?,3,4,?:down\n")
    ds = read_ts(p)
    assert ds.missing_filled == 5
    np.testing.assert_array_equal(ds.series[0].T, [[2, 2, 2, 2, 5], [1, 1, 3, 4, 4]])
    assert np.isfinite(ds.series[0]).all()


def test_univariate_timestamps_and_unlabelled(tmp_path):
    text = "@problemName U\n@timeStamps true\n@univariate true\n@classLabel false\n@data\n" \
           "(0,1.0),(1,2.5),(2,-1)\n(0,4),(1,5)\n"
    ds = read_ts(write(tmp_path, text))
    assert ds.labels is None and ds.class_labels is None and ds.dims == 1
    np.testing.assert_array_equal(ds.series[0][:, 0], [1.0, 2.5, -1.0])


@pytest.mark.parametrize("body, message", [
    ("1,2\n", "no class label"),
    ("1,2:3,4\n", "class label .3,4. is not declared"),
    ("1,2:3,4:left\n", "'left' is not declared"),
    ("1,2:3,4:5,6:up\n", "3 dimensions, expected 2"),
    ("1,x:3,4:up\n", "'x' is not a number"),
    ("1,2:3:up\n", "different lengths"),
    ("1,2::up\n", "dimension 1 is empty"),
    ("?,?:1,2:up\n", "only missing values"),
    ("", "no cases after @data"),
])
def test_malformed_cases(tmp_path, body, message):
    p = write(tmp_path, HEADER.format(missing="true") + body)
    with pytest.raises(DataError, match=message) as err:
        read_ts(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("@problemName X\n@classLabel true a b\n1,2:a\n", "expected a header tag"),
    ("@problemName X\n@classLabel true a b\n", "no @data section"),
    ("@univariate maybe\n@data\n1:a\n", "expected true or false"),
    ("@dimensions two\n@data\n1\n", "positive integer"),
    ("@classLabel true\n@data\n1:a\n", "no class labels listed"),
    ("@targetLabel true\n@data\n1:0.5\n", "regression"),
    ("@equalLength true\n@classLabel true a\n@data\n1,2:a\n1:a\n", "@equalLength true"),
    ("@equalLength true\n@seriesLength 3\n@classLabel false\n@data\n1,2\n", "@seriesLength says 3"),
])
def test_malformed_headers(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_ts(write(tmp_path, text))


def test_binary_and_missing_file(tmp_path):
    p = tmp_path / "bin.ts"
    p.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DataError, match="not a text .ts file"):
        read_ts(p)
    with pytest.raises(DataError, match="no such file"):
        read_ts(tmp_path / "absent.ts")


def test_cli_malformed_ts_exits_2_with_one_line(tmp_path):
    p = write(tmp_path, HEADER.format(missing="false") + "1,2:3,4:up\n1,2:3,q:down\n")
    out = tmp_path / "m.npz"
    r = subprocess.run([str(EDGECOMPILE), "train", "--data", str(p), "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "toy.ts:11" in r.stderr and "'q'" in r.stderr
    assert not out.exists()


def test_japanese_vowels_example():
    train = read_ts(EXAMPLE / "JapaneseVowels_TRAIN.ts")
    test = read_ts(EXAMPLE / "JapaneseVowels_TEST.ts")
    assert len(train.series) == 270 and len(test.series) == 370 and train.dims == 12
    assert train.class_labels == [str(i) for i in range(1, 10)]
    assert np.bincount(train.labels).tolist() == [30] * 9
    assert test.lengths.min() == 7 and test.lengths.max() == 29
