#!/usr/bin/env bash
# Peak resident memory of certifying the largest image the default memory ceiling accepts
# (2,048 MB: 21.3 megapixels), through the photo denoiser, against the in-process stand-in.
# Usage: scripts/peak_rss.sh [SIDE] (default 4608: 4608 × 4608 = 21.2 MP)
# Needs a release build (cargo build --release) and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
side="${1:-4608}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
# A PNG written with the standard library alone: a smooth pattern with some texture.
python3 - "$side" "$dir/big.png" <<'PY'
import struct, sys, zlib
side, out = int(sys.argv[1]), sys.argv[2]
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
z = zlib.compressobj(6)
raw = []
for y in range(side):
    row = bytearray(b"\x00")
    row += bytes(((x * 255 // side + (x * y) % 17) & 255, (y * 255 // side) & 255, ((x ^ y) & 63) + 96)[c]
                 for x in range(side) for c in range(3))
    raw.append(z.compress(bytes(row)))
raw.append(z.flush())
with open(out, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n")
    f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)))
    f.write(chunk(b"IDAT", b"".join(raw)))
    f.write(chunk(b"IEND", b""))
PY
ls -l "$dir/big.png"
/usr/bin/time -v target/release/robustify certify "$dir/big.png" --provider standin-local \
    --denoiser photo-unet-0.25 --sigma 0.25 --n0 1 --n 2 --json 2> "$dir/time.txt"
grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$dir/time.txt"
