#!/usr/bin/python3
"""Reads a cuface shard (.cfpk) with nothing but the Python standard library, following
docs/pack-format.md: an independent check of the format, and a way to look at what was packed.

  scripts/pack_dump.py SHARD                 list records (index, labels, encoding, size, source)
  scripts/pack_dump.py SHARD I OUT           write record I's image to OUT (.jpg/.png as stored,
                                             .ppm for raw pixels); checks its CRC first
"""
import signal
import struct
import sys
import zlib

signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet under | head

HEADER = struct.Struct("<8sIIQQII20xI")  # magic, version, header bytes, count, index offset, shard, shards, crc
FIXED = struct.Struct("<ibBhHHBxH")       # identity, gender, encoding, age, width, height, channels, path length
ENCODINGS = {0: "raw", 1: "jpeg", 2: "png"}


def open_shard(path):
    data = open(path, "rb").read()
    magic, version, header_bytes, count, index_offset, shard, shards, crc = HEADER.unpack_from(data, 0)
    assert magic == b"CUFACEPK", "not a cuface shard"
    assert version == 1 and header_bytes == 64, "unsupported version"
    assert zlib.crc32(data[:60]) == crc, "header CRC mismatch"
    assert len(data) == index_offset + 8 * count + 4, "truncated shard"
    index = data[index_offset:index_offset + 8 * count]
    assert zlib.crc32(index) == struct.unpack_from("<I", data, index_offset + 8 * count)[0], "index CRC mismatch"
    return data, struct.unpack("<%dQ" % count, index)


def record(data, offset):
    body_bytes, crc = struct.unpack_from("<II", data, offset)
    body = data[offset + 8:offset + 8 + body_bytes]
    identity, gender, encoding, age, width, height, channels, path_bytes = FIXED.unpack_from(body, 0)
    source = body[16:16 + path_bytes].decode("utf-8", "replace")
    return dict(identity=identity, gender=gender, age=age, encoding=ENCODINGS.get(encoding, encoding), width=width,
                height=height, channels=channels, source=source, image=body[16 + path_bytes:],
                crc_ok=zlib.crc32(body) == crc)


def main():
    data, offsets = open_shard(sys.argv[1])
    if len(sys.argv) == 2:
        for i, offset in enumerate(offsets):
            r = record(data, offset)
            print(i, r["identity"], r["gender"], r["age"], r["encoding"], "%dx%d" % (r["width"], r["height"]),
                  len(r["image"]), r["source"], "" if r["crc_ok"] else "CRC MISMATCH")
        return
    r = record(data, offsets[int(sys.argv[2])])
    assert r["crc_ok"], "record CRC mismatch"
    with open(sys.argv[3], "wb") as out:
        if r["encoding"] == "raw":
            out.write(b"P6\n%d %d\n255\n" % (r["width"], r["height"]))
        out.write(r["image"])


if __name__ == "__main__":
    main()
