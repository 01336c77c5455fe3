"""Minimal safetensors reader/writer (numpy only) shared by the fixture scripts.

Format: 8-byte little-endian header length N, then N bytes of JSON header
{name: {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}},
then the raw little-endian tensor bytes. Offsets are relative to the end of the header.

bf16 is supported without ml_dtypes: tensors are held as float32 arrays in memory and
rounded (round-to-nearest-even) to bf16 when written; reading bf16 gives float32 back.
"""

import json
import struct

import numpy as np

_ST_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
_ALIASES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "F32": "F32", "F16": "F16", "BF16": "BF16"}


def f32_to_bf16_bits(x):
    """Round float32 values to bf16 (nearest, ties to even); returns uint16 bit patterns."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bias = ((u >> 16) & 1) + 0x7FFF
    out = ((u + bias) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    if nan.any():
        out[nan] = 0x7FC0
    return out


def bf16_bits_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_to(x, dtype):
    """Return float32 array holding x rounded to dtype ('f32', 'f16' or 'bf16')."""
    st = _ALIASES[dtype]
    x = np.asarray(x, dtype=np.float32)
    if st == "F32":
        return x.copy()
    if st == "F16":
        return x.astype(np.float16).astype(np.float32)
    return bf16_bits_to_f32(f32_to_bf16_bits(x))


def _encode(arr, st):
    arr = np.asarray(arr)
    if st == "F32":
        return np.ascontiguousarray(arr, dtype="<f4").tobytes()
    if st == "F16":
        return np.ascontiguousarray(arr.astype(np.float32).astype("<f2")).tobytes()
    return np.ascontiguousarray(f32_to_bf16_bits(arr.astype(np.float32)).astype("<u2")).tobytes()


def write_safetensors(path, tensors, dtype="f32", metadata=None):
    """tensors: dict name -> numpy array (any float dtype). All stored as `dtype`.

    Tensors are written in sorted-name order (as the reference implementation does)."""
    st = _ALIASES[dtype]
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        blob = _encode(arr, st)
        header[name] = {"dtype": st, "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # pad the header with spaces so the data section starts 8-byte aligned
    pad = (-(8 + len(hjson))) % 8
    hjson += b" " * pad
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    """Returns (dict name -> float32 numpy array, dict name -> stored dtype string, metadata)."""
    raw, meta, dtypes = _read(path, _ST_DTYPES)
    out = {}
    for name, arr in raw.items():
        if dtypes[name] == "BF16":
            arr = bf16_bits_to_f32(arr).reshape(arr.shape)
        out[name] = arr.astype(np.float32)
    return out, dtypes, meta


_RAW_DTYPES = dict(_ST_DTYPES, U8=np.dtype("u1"), I64=np.dtype("<i8"), U64=np.dtype("<u8"),
                   I32=np.dtype("<i4"), U32=np.dtype("<u4"))


def _read(path, types):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = memoryview(raw)[8 + n :]
    out, dtypes = {}, {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=types[info["dtype"]]).reshape(info["shape"])
        dtypes[name] = info["dtype"]
    return out, meta, dtypes


def read_raw(path):
    """Returns (dict name -> numpy array in the stored type, BF16 as uint16 bits, metadata)."""
    out, meta, _ = _read(path, _RAW_DTYPES)
    return out, meta
