#!/usr/bin/env python3
"""Check `tide compress` against numpy: for several settings on models/tide-k4, decode what the
command wrote (numpy's own q4_1 / q8_0 / f16 decoders), rebuild E_k ~ A_k B_k, and compare
  - each block's reported total relative error with ||E - rebuilt||_F / ||E||_F,
  - each block's reported SVD error with numpy's SVD: sqrt(sum_{i>=r} s_i^2 / sum s_i^2),
  - the rank picked by --svd-ratio / --svd-energy with the rule applied to numpy's s,
  - the bases' stored type (f16 unless --svd-basis f32).
Usage: check_compress.py TIDE_BINARY   (exit status 1 on any mismatch)
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_io import read_raw  # noqa: E402

QK = 32
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "tide-k4")


def f16(b):
    return np.ascontiguousarray(b).view(np.float16).astype(np.float64)


def decode(arr, rows_type, width):
    """Stored rows (as read) -> float64 [V, width]."""
    if rows_type == "f32":
        return arr.astype(np.float64)
    if rows_type == "f16":
        return arr.astype(np.float64)
    v = arr.shape[0]
    if rows_type == "q4_1":
        blk = arr.reshape(v, width // QK, 20)
        d, m = f16(blk[..., 0:2]), f16(blk[..., 2:4])
        q = np.concatenate([blk[..., 4:] & 15, blk[..., 4:] >> 4], axis=-1).astype(np.float64)
        return (q * d + m).reshape(v, width)
    if rows_type == "q8_0":
        blk = arr.reshape(v, width // QK, 34)
        d = f16(blk[..., 0:2])
        q = blk[..., 2:].copy().view(np.int8).astype(np.float64)
        return (q * d).reshape(v, width)
    raise ValueError(rows_type)


def source_tables():
    t, meta = read_raw(os.path.join(MODEL, "model.safetensors"))
    k, d = int(meta["tide.k"]), json.load(open(os.path.join(MODEL, "config.json")))["hidden_size"]
    return [decode(t[f"tide.memory.{i}.rows"], meta["tide.rows"], d) for i in range(k)]


def check(tide, args, src, failures):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        subprocess.run([tide, "compress", *args, "--out", out], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rep = json.load(open(os.path.join(out, "compress_report.json")))
        t, meta = read_raw(os.path.join(out, "memory.safetensors"))
    width = rep["width"]
    for b in rep["blocks"]:
        k = b["block"]
        e = src[k]
        a = decode(t[f"tide.memory.{k}.rows"], meta["tide.rows"], width)
        basis = t.get(f"tide.memory.{k}.basis")
        want_basis = np.float32 if "f32" in args else np.float16  # --svd-basis, default f16
        if basis is not None and basis.dtype != want_basis:
            failures.append(f"{' '.join(args)} block {k}: basis stored as {basis.dtype}")
        rebuilt = a if basis is None else a @ basis.astype(np.float64)
        err = np.linalg.norm(e - rebuilt) / np.linalg.norm(e)
        s2 = np.linalg.svd(e, compute_uv=False) ** 2
        r = b["rank"]
        svd_err = math.sqrt(s2[r:].sum() / s2.sum()) if basis is not None else 0.0
        d = e.shape[1]
        want_r = d
        if "--svd-rank" in args:
            want_r = int(args[args.index("--svd-rank") + 1])
        elif "--svd-ratio" in args:
            want_r = math.ceil(float(args[args.index("--svd-ratio") + 1]) * d)
        elif "--svd-energy" in args:
            share = float(args[args.index("--svd-energy") + 1])
            want_r = int(np.searchsorted(np.cumsum(s2) / s2.sum(), share * (1 - 1e-12)) + 1)
        line = (f"{' '.join(args):40s} block {k}: rank {r} (numpy {want_r}), error {b['rel_error']:.6f} "
                f"(numpy {err:.6f}), SVD error {b['svd_rel_error']:.6f} (numpy {svd_err:.6f})")
        print(line)
        if r != want_r or abs(err - b["rel_error"]) > 1e-5 or abs(svd_err - b["svd_rel_error"]) > 1e-5:
            failures.append(line)


def main():
    tide = sys.argv[1]
    src = source_tables()
    failures = []
    for args in (["--bits", "4"], ["--bits", "8"], ["--bits", "16"],
                 ["--bits", "4", "--svd-ratio", "0.5"], ["--bits", "8", "--svd-rank", "48"],
                 ["--bits", "16", "--svd-energy", "0.8"], ["--bits", "32", "--svd-ratio", "0.3"],
                 ["--bits", "32", "--svd-ratio", "0.3", "--svd-basis", "f32"]):
        check(tide, args, src, failures)
    if failures:
        print("MISMATCH:\n" + "\n".join(failures))
        sys.exit(1)
    print("tide compress agrees with numpy on every block")


if __name__ == "__main__":
    main()
