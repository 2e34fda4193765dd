#!/usr/bin/python3
"""Tiny InsightFace-style verification .bin files for tests/face/test_insightface_bin.cpp.

InsightFace stores a verification set (lfw.bin, cfp_fp.bin, agedb_30.bin) as
pickle.dump((bins, issame_list), f, protocol=pickle.HIGHEST_PROTOCOL): `bins` is the list of JPEG
byte strings (two per pair), `issame_list` one Python bool per pair. The published files were
written by Python 2 (protocol 2, images as `str` -> SHORT_BINSTRING / BINSTRING opcodes); Python 3
writes protocol 4 or 5 (images as bytes -> SHORT_BINBYTES / BINBYTES, with FRAME and MEMOIZE).

Writes, under tests/fixtures/:
  verification_p4.bin, verification_p5.bin  pickle.dump with protocols 4 and 5 (HIGHEST in 3.8+)
  verification_py2.bin                      the Python 2 protocol 2 stream, assembled opcode by opcode
                                            and checked with pickle.loads(..., encoding='bytes')
  verification_bin.json                     the expected images (hex) and is-same flags
"""
import io
import json
import os
import pickle
import struct

from PIL import Image


def tiny_jpeg(seed, size):
    """A small deterministic RGB gradient image, JPEG-encoded."""
    image = Image.new("RGB", (size, size))
    image.putdata([((x * 37 + seed * 50) % 256, (y * 53 + seed * 20) % 256, (x * y + seed) % 256)
                   for y in range(size) for x in range(size)])
    out = io.BytesIO()
    image.save(out, "JPEG", quality=70)
    return out.getvalue()


def python2_pickle(bins, issame):
    """What Python 2's pickle.dump((bins, issame), f, 2) writes for str images and bool flags."""
    memo = [0]

    def put():
        index = memo[0]
        memo[0] += 1
        return b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)

    out = b"\x80\x02" + b"]" + put() + b"("
    for image in bins:
        if len(image) < 256:
            out += b"U" + bytes([len(image)]) + image + put()
        else:
            out += b"T" + struct.pack("<i", len(image)) + image + put()
    out += b"e" + b"]" + put() + b"("
    for same in issame:
        out += b"\x88" if same else b"\x89"
    out += b"e" + b"\x86" + put() + b"."
    return out


def main():
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
    bins = [tiny_jpeg(seed, 8 + 4 * seed) for seed in range(6)]
    issame = [True, False, True]
    for protocol in (4, 5):
        with open(os.path.join(out_dir, "verification_p%d.bin" % protocol), "wb") as f:
            pickle.dump((bins, issame), f, protocol=protocol)
    legacy = python2_pickle(bins, issame)
    loaded_bins, loaded_issame = pickle.loads(legacy, encoding="bytes")
    assert loaded_bins == bins and loaded_issame == issame
    with open(os.path.join(out_dir, "verification_py2.bin"), "wb") as f:
        f.write(legacy)
    with open(os.path.join(out_dir, "verification_bin.json"), "w") as f:
        json.dump({"images": [b.hex() for b in bins], "issame": issame}, f)


if __name__ == "__main__":
    main()
