"""Write the .npy arrays shipped with this example from the two .ts files next to it.

    .venv/bin/python examples/japanese_vowels/make_arrays.py

X_test.npy   float32 [370, 29, 12]  the official test set, front-padded to T=29 (first frame repeated)
y_test.npy   int64   [370]          speaker 1..9 as class 0..8
X_calib.npy  float32 [135, 29, 12]  every second training sequence (quantizer calibration data)
"""

from pathlib import Path

import numpy as np

from edgecompile.frontend.tsfile import read_ts

HERE = Path(__file__).resolve().parent
T = 29  # the longest series in the archive (train 7..26 frames, test 7..29)


def main() -> None:
    test = read_ts(HERE / "JapaneseVowels_TEST.ts")
    train = read_ts(HERE / "JapaneseVowels_TRAIN.ts")
    np.save(HERE / "X_test.npy", test.padded(T, "edge").astype(np.float32))
    np.save(HERE / "y_test.npy", test.labels.astype(np.int64))
    np.save(HERE / "X_calib.npy", train.padded(T, "edge")[::2].astype(np.float32))
    print(f"wrote X_test.npy {len(test.series)}x{T}x{test.dims}, y_test.npy, "
          f"X_calib.npy {len(train.series[::2])}x{T}x{train.dims}")


if __name__ == "__main__":
    main()
