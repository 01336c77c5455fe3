#!/usr/bin/env python3
"""Q4_0 oracle from gguf-py (llama.cpp's own Python package) -> tests/fixtures/q4_0/.

    "$(scripts/venv.sh scripts/requirements.txt)" scripts/make_q4_0_fixture.py [--out DIR]

Writes a [13, 96] f32 matrix (input.f32), gguf.quants.quantize's Q4_0 blocks of it (q4_0.bin,
18 bytes a block: f16 scale, 16 bytes of nibbles) and gguf.quants.dequantize's floats of those
blocks (dequant.f32), all little-endian, with meta.json naming the shape and the versions.
tests/quant_oracle.rs decodes q4_0.bin with the runtime (CPU and GPU) against dequant.f32.
Deterministic: the same gguf and numpy give the same bytes.
"""

import argparse
import json
import os

import numpy as np

ROWS, COLS = 13, 96  # 3 blocks a row; 13 rows: not a multiple of any workgroup


def matrix():
    rng = np.random.default_rng(20240611)
    # Rows of normal values at scales from 1e-3 to 1e2.
    scales = np.logspace(-3, 2, ROWS).astype(np.float32)
    x = (rng.standard_normal((ROWS, COLS)).astype(np.float32) * scales[:, None])
    b = x.reshape(ROWS, COLS // 32, 32)
    b[0, 0] = 0.0                                     # all zero: scale 0
    b[0, 1, 5] = 40.0 * scales[0]                     # largest |x| positive: negative scale
    b[0, 2, 9] = -40.0 * scales[0]                    # largest |x| negative: positive scale
    b[1, 0] = 0.5                                     # constant block
    b[1, 1] = rng.standard_normal(32) * 1e-6          # scale an f16 subnormal
    b[1, 2] = np.linspace(-1000.0, 1000.0, 32)        # large values, evenly spaced
    return b.reshape(ROWS, COLS).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                  "fixtures", "q4_0"))
    a = ap.parse_args()

    import gguf
    from importlib.metadata import version
    from gguf.quants import dequantize, quantize

    x = matrix()
    q = quantize(x, gguf.GGMLQuantizationType.Q4_0)
    assert q.dtype == np.uint8 and q.shape == (ROWS, COLS // 32 * 18), q.shape
    y = dequantize(q, gguf.GGMLQuantizationType.Q4_0).astype(np.float32)
    assert y.shape == x.shape

    os.makedirs(a.out, exist_ok=True)
    x.astype("<f4").tofile(os.path.join(a.out, "input.f32"))
    q.tofile(os.path.join(a.out, "q4_0.bin"))
    y.astype("<f4").tofile(os.path.join(a.out, "dequant.f32"))
    meta = {
        "generator": "scripts/make_q4_0_fixture.py",
        "gguf": version("gguf"),
        "numpy": np.__version__,
        "rows": ROWS,
        "cols": COLS,
        "files": {"input.f32": "f32 [rows, cols]", "q4_0.bin": "gguf.quants.quantize(input, Q4_0)",
                  "dequant.f32": "gguf.quants.dequantize(q4_0.bin, Q4_0)"},
    }
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {a.out}: max |dequant - input| = {np.abs(y - x).max():.4g}")


if __name__ == "__main__":
    main()
