#!/usr/bin/env python3
"""Quantisation oracles from gguf-py (llama.cpp's own Python package) -> tests/fixtures/TYPE/
for TYPE in q4_0, q5_0, q5_1 (quantised by gguf-py) and q4_k, q5_k, q6_k (gguf-py only
dequantises these: the blocks are random bytes, each a valid block, with sane f16 scales).

    "$(scripts/venv.sh scripts/requirements.txt)" scripts/make_quant_fixtures.py [--out DIR]

For each type, writes a [13, 96] f32 matrix (input.f32), gguf.quants.quantize's blocks of it
(TYPE.bin: Q4_0 18 bytes a block, f16 scale + 16 bytes of nibbles; Q5_0 22 bytes, f16 scale +
32 high bits + nibbles; Q5_1 24 bytes, f16 scale + f16 min + high bits + nibbles) and
gguf.quants.dequantize's floats of those blocks (dequant.f32), all little-endian, with
meta.json naming the shape and the versions. For the K-quants there is no input.f32: TYPE.bin
holds [13, 512] elements' worth of random super-blocks (Q4_K 144 bytes per 256 elements,
Q5_K 176, Q6_K 210), with a few chosen edge cases. tests/quant_oracle.rs decodes TYPE.bin with
the runtime (CPU and GPU) against dequant.f32. Deterministic: the same gguf and numpy give the
same bytes.
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


BLOCK_BYTES = {"q4_0": 18, "q5_0": 22, "q5_1": 24}
K_COLS = 512  # 2 super-blocks a row
K_BLOCK_BYTES = {"q4_k": 144, "q5_k": 176, "q6_k": 210}


def k_blocks(name, bb):
    """[ROWS, K_COLS / 256 * bb] random super-blocks: random codes and packed scales, f16 d
    (and dmin) drawn from normals of scale 1e-2 (Q6_K: 1e-3), and edge cases."""
    rng = np.random.default_rng({"q4_k": 1, "q5_k": 2, "q6_k": 3}[name])
    n = ROWS * K_COLS // 256
    q = rng.integers(0, 256, size=(n, bb), dtype=np.uint8)
    f16 = lambda v: np.atleast_1d(np.asarray(v, dtype=np.float16)).view(np.uint8)
    if name == "q6_k":
        q[:, 208:210] = f16(rng.standard_normal(n) * 1e-3).reshape(n, 2)
        q[0, 192:208] = 0x80                   # every scale -128
        q[1, 208:210] = f16(3e-7)              # d an f16 subnormal
        q[2, :192] = 0xFF                      # every code 63
    else:
        q[:, 0:2] = f16(rng.standard_normal(n) * 1e-2).reshape(n, 2)
        q[:, 2:4] = f16(rng.standard_normal(n) * 1e-2).reshape(n, 2)
        q[0, 4:16] = 0xFF                      # every scale and min 63
        q[1, 4:16] = 0x00                      # every scale and min 0
        q[2, 0:2] = f16(3e-7)                  # d an f16 subnormal
        q[3, 0:4] = f16([-0.5, -0.25]).reshape(4)  # negative d and dmin
    return q.reshape(ROWS, -1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                  "fixtures"))
    a = ap.parse_args()

    import gguf
    from gguf.quants import dequantize, quantize

    x = matrix()
    for name, bb in BLOCK_BYTES.items():
        t = getattr(gguf.GGMLQuantizationType, name.upper())
        q = quantize(x, t)
        assert q.dtype == np.uint8 and q.shape == (ROWS, COLS // 32 * bb), q.shape
        y = dequantize(q, t).astype(np.float32)
        assert y.shape == x.shape
        out = write(a.out, name, q, y, COLS, f"gguf.quants.quantize(input, {name.upper()})", x)
        print(f"wrote {out}: max |dequant - input| = {np.abs(y - x).max():.4g}")

    for name, bb in K_BLOCK_BYTES.items():
        t = getattr(gguf.GGMLQuantizationType, name.upper())
        q = k_blocks(name, bb)
        y = dequantize(q, t).astype(np.float32)
        assert y.shape == (ROWS, K_COLS), y.shape
        assert np.isfinite(y).all()
        out = write(a.out, name, q, y, K_COLS, f"random {name.upper()} super-blocks (k_blocks)")
        print(f"wrote {out}: |dequant| up to {np.abs(y).max():.4g}")


def write(root, name, q, y, cols, blocks_are, x=None):
    """TYPE.bin, dequant.f32 (and input.f32 when there is one) and meta.json under root/name."""
    from importlib.metadata import version
    out = os.path.join(root, name)
    os.makedirs(out, exist_ok=True)
    files = {}
    if x is not None:
        x.astype("<f4").tofile(os.path.join(out, "input.f32"))
        files["input.f32"] = "f32 [rows, cols]"
    q.tofile(os.path.join(out, f"{name}.bin"))
    y.astype("<f4").tofile(os.path.join(out, "dequant.f32"))
    files[f"{name}.bin"] = blocks_are
    files["dequant.f32"] = f"gguf.quants.dequantize({name}.bin, {name.upper()})"
    meta = {
        "generator": "scripts/make_quant_fixtures.py",
        "gguf": version("gguf"),
        "numpy": np.__version__,
        "type": name.upper(),
        "rows": ROWS,
        "cols": cols,
        "files": files,
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    return out

if __name__ == "__main__":
    main()
