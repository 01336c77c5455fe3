"""Split a GGUF file into llama.cpp's split format with gguf-py's own writer (an outside
writer: the split keys, names and layout are gguf-py's, not tide's): NAME-00001-of-0000N.gguf ..
NAME-0000N-of-0000N.gguf, at most --max-tensors tensors a part.

Made tests/fixtures/split/ (qwen2 in 3 parts; the K-quant tiny model likewise, --max-tensors 12):
    .cache/venv/bin/python scripts/split_gguf.py tests/fixtures/arch/qwen2.gguf \
        tests/fixtures/split/qwen2.gguf --max-tensors 10
The venv: scripts/venv.sh scripts/requirements.txt scripts/requirements-llamacpp.txt (gguf).
"""
import argparse

from gguf import GGUFReader, GGUFValueType, GGUFWriter


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out", help="NAME.gguf: the parts are written beside it as NAME-0000i-of-0000N.gguf")
    ap.add_argument("--max-tensors", type=int, required=True)
    a = ap.parse_args()
    r = GGUFReader(a.src)
    arch = r.fields["general.architecture"].contents()
    align = r.fields.get("general.alignment")
    w = GGUFWriter(a.out, arch, split_max_tensors=a.max_tensors)
    if align is not None:
        w.data_alignment = int(align.contents())
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(name, field.contents(), vtype, sub_type=sub)
    for t in r.tensors:
        # Stored bytes as they are (quantised blocks included), in the source's shape.
        w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
