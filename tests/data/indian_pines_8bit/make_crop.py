"""Cut the Indian Pines 8-bit test crop out of the full SSGA files.

Run from the repository root (needs the full scene in ``../shared/data/indian_pines_8bit``)::

    .venv/bin/python tests/data/indian_pines_8bit/make_crop.py

It checks the sha256 of the two source files, cuts rows ``ROW:ROW+SIZE`` and columns
``COL:COL+SIZE`` (0-based, end exclusive) of ``data_M`` and ``label_M`` and saves them as
MATLAB v5 files with the same variable names and dtypes, then prints the sha256 of the crop
arrays' bytes (the .mat headers carry a creation date, so the files' own sums change per run).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import scipy.io

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2].parent / "shared" / "data" / "indian_pines_8bit"
SOURCES = {  # file: (variable, sha256 of the unmodified SSGA copy)
    "IP_200_M.mat": ("data_M",
                     "8bfb849c31ce3697b5317447064a17f146ae93f1849c07b7e9e5bbd79966315e"),
    "Label_M_IP_16.mat": ("label_M",
                          "aa0181d0aaa534a153eb1aaecac3e61a926bb21c017f9a837cc1f763bfa1cfec"),
}
ROW, COL, SIZE = 55, 16, 24


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--row", type=int, default=ROW)
    p.add_argument("--col", type=int, default=COL)
    p.add_argument("--size", type=int, default=SIZE)
    args = p.parse_args()
    window = (slice(args.row, args.row + args.size), slice(args.col, args.col + args.size))
    for name, (key, expected) in SOURCES.items():
        src = args.source / name
        digest = _sha256(src)
        if digest != expected:
            raise SystemExit(f"{src}: sha256 {digest}, expected {expected}")
        array = scipy.io.loadmat(src, variable_names=[key])[key]
        crop = np.ascontiguousarray(array[window])
        scipy.io.savemat(args.out / name, {key: crop}, format="5", do_compression=False)
        back = scipy.io.loadmat(args.out / name)[key]
        assert back.dtype == array.dtype and np.array_equal(back, crop)
        print(f"{name}: {key} {crop.shape} {crop.dtype}, array sha256 "
              f"{hashlib.sha256(crop.tobytes()).hexdigest()}, file "
              f"{(args.out / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
