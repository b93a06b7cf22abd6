"""The benchmark's Q4_K_M file: SmolLM2-135M-Instruct, from the shipped Q4_1 file, dequantised to
f32 (the PyPI `gguf` package: llama.cpp's dequantisers) and quantised to Q4_K_M by llama.cpp's own
quantiser (`llama_model_quantize` through llama-cpp-python, the version bench/run installs).

SmolLM2's width (576) is not a multiple of 256, so llama.cpp gives most of its matrices the
fallback types, as it does for any Q4_K_M of this model: Q5_0 where Q4_K would be, Q8_0 where Q6_K
would be; only the FFN down projections (1536 wide) get Q4_K and Q6_K. The file is deterministic
for a given llama.cpp: its SHA-256 is checked against SHA256 below, so that the golden fixture
made from it (tests/fixtures/make_q4_k_m_fixture.py) matches what the benchmark measures.

    bench/.venv/bin/python bench/make_q4_k_m.py [--force]
writes models/SmolLM2-135M-Instruct.Q4_K_M.gguf (the f32 file in between is deleted).
"""
import argparse
import ctypes
import hashlib
import os
import pathlib
import sys

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TARGET = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_K_M.gguf"
# The file llama-cpp-python 0.3.36 writes (bench/run pins it).
SHA256 = "dc0f3a02e821146247a0af6895adf9872124f368682cb110cb9ed09ff2a9f9f1"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def to_f32(src, dst):
    """Every tensor dequantised to f32; every metadata key copied but the file type."""
    r = GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = GGUFWriter(dst, arch)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(name, field.contents(), vtype, sub)
    w.add_file_type(0)  # LLAMA_FTYPE_ALL_F32
    for t in r.tensors:
        # GGUF dims run innermost first; numpy's shape is the reverse.
        shape = tuple(int(d) for d in reversed(t.shape))
        data = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        w.add_tensor(t.name, data, raw_dtype=T.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(src, dst):
    import llama_cpp

    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    p.nthread = os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"llama_model_quantize failed ({rc})")
    return llama_cpp.__version__


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--force", action="store_true", help="make it again even if it verifies")
    ap.add_argument("--print-sha", action="store_true", help="print the SHA-256 made, do not check it")
    a = ap.parse_args()
    if TARGET.exists() and not a.force and sha256(TARGET) == SHA256:
        print(f"ok: {TARGET} (verified)")
        return
    f32 = TARGET.with_suffix(".f32.gguf")
    print(f"== {SOURCE.name} to f32, then llama.cpp's Q4_K_M quantiser")
    to_f32(SOURCE, f32)
    try:
        version = quantize(f32, TARGET)
    finally:
        f32.unlink(missing_ok=True)
    got = sha256(TARGET)
    types = {}
    for t in GGUFReader(TARGET).tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes, sha256 {got}; llama-cpp-python {version}); tensors by type: {types}")
    if not a.print_sha and got != SHA256:
        sys.exit(f"error: {TARGET.name} is not the file the fixture was made from (sha256 {got}, want {SHA256}); "
                 "another llama.cpp quantises differently: remake the fixture (tests/fixtures/make_q4_k_m_fixture.py)")


if __name__ == "__main__":
    main()
