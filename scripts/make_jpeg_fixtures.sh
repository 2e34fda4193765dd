#!/bin/sh
# Regenerates tests/fixtures/image/: a small synthetic colour image as a baseline JPEG and the same
# DCT coefficients rewritten as a progressive JPEG (jpegtran is lossless), so the decoder tests can
# check that the progressive path yields the very pixels of the baseline one.
# Needs Debian's libjpeg-turbo-progs (cjpeg, jpegtran) and python3.
set -e
out="$(dirname "$0")/../tests/fixtures/image"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/synthetic.ppm" <<'PY'
import math, sys
w, h = 72, 56
pixels = bytearray()
for y in range(h):
    for x in range(w):
        r = int(127.5 + 127.5 * math.sin(x / 7.0))
        g = int(255 * y / (h - 1))
        b = 255 if (x - 36) ** 2 + (y - 28) ** 2 < 15 ** 2 else 40
        pixels += bytes((r, g, b))
with open(sys.argv[1], "wb") as f:
    f.write(b"P6\n%d %d\n255\n" % (w, h) + bytes(pixels))
PY
cjpeg -quality 85 -sample 2x2 "$tmp/synthetic.ppm" > "$out/synthetic_baseline.jpg"
jpegtran -progressive -copy none "$out/synthetic_baseline.jpg" > "$out/synthetic_progressive.jpg"
cp "$tmp/synthetic.ppm" "$out/synthetic.ppm"
