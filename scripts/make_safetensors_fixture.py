#!/usr/bin/python3
"""Writes tests/fixtures/safetensors_small.safetensors, the file tests/engine/test_safetensors.cpp
reads to prove cuface understands safetensors written by other tools.

Debian's python3 has no `safetensors` package, so the format is written by hand, as the reference
implementation writes it: 8-byte little-endian header length, JSON header padded with spaces to a
multiple of 8, then the tensors' little-endian bytes. The data section is laid out in an order that
differs from the header's key order, and bf16 bits come from torch's own float -> bfloat16 rounding,
f16 bits from numpy's, so the test cross-checks cuface's conversions too.

The values are formulas the test recomputes:
  weights   F32  [2, 3]        pi * (i - 2)
  half      F16  [4]           0.1, -2.5, 65504, 6e-8
  brain     BF16 [1, 2, 2, 1]  1.0, -0.1, 3.0e38, 1e-3
  labels    I32  [5]           -2^31, -1, 0, 7, 2^31 - 1
  pixels    U8   [2, 2, 3]     (37 * i) % 256
  scalar    F32  []            42.5
  empty     F32  [0, 3]        (no data)
"""
import json
import math
import os
import struct

import numpy as np
import torch

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                       "safetensors_small.safetensors")


def main():
    bf16_bits = torch.tensor([1.0, -0.1, 3.0e38, 1e-3], dtype=torch.float32).to(torch.bfloat16).view(torch.int16)
    # (name, safetensors dtype, shape, little-endian bytes), in data-section order.
    tensors = [
        ("pixels", "U8", [2, 2, 3], np.array([(37 * i) % 256 for i in range(12)], dtype="<u1").tobytes()),
        ("weights", "F32", [2, 3], np.array([math.pi * (i - 2) for i in range(6)], dtype="<f4").tobytes()),
        ("empty", "F32", [0, 3], b""),
        ("labels", "I32", [5], np.array([-2**31, -1, 0, 7, 2**31 - 1], dtype="<i4").tobytes()),
        ("half", "F16", [4], np.array([0.1, -2.5, 65504.0, 6e-8], dtype="<f2").tobytes()),
        ("brain", "BF16", [1, 2, 2, 1], bf16_bits.numpy().astype("<i2").tobytes()),
        ("scalar", "F32", [], np.array(42.5, dtype="<f4").tobytes()),
    ]
    header = {"__metadata__": {"producer": "scripts/make_safetensors_fixture.py", "note": "unicode \u2713"}}
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, sort_keys=True, ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(FIXTURE, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for _, _, _, data in tensors:
            out.write(data)
    print(f"wrote {FIXTURE} ({8 + len(text) + offset} bytes)")


if __name__ == "__main__":
    main()
