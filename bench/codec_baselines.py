#!/usr/bin/env python3
"""Classical lossless codecs on the first N test images of a data set, for
docs/codec.md (run by bench/codec.sh; not part of make check).

    python3 bench/codec_baselines.py DATA N WORKDIR

DATA is a data set directory: IDX files (t10k-images-idx3-ubyte[.gz]) or
CIFAR-10 batches (test_batch.bin[.gz]). Writes each image as a PNG (grey or
RGB, zlib level 9) and all N as one PNG grid (ceil(sqrt(N)) columns, no gaps,
black where the last row is short), then compresses them with
  PNG      optipng -o7
  WebP     cwebp -lossless -z 9
  JPEG XL  cjxl -d 0 -e 9
(Debian: optipng, webp, libjxl-tools; scripts/deps.sh bench) and prints one
line per codec: name, bytes per image summed, bits/dim, bytes of the grid,
bits/dim of the grid (over the N images' dimensions, not the black padding).
"""
import gzip
import math
import os
import struct
import subprocess
import sys
import zlib


def read_maybe_gz(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            opener = gzip.open if p.endswith(".gz") else open
            with opener(p, "rb") as f:
                return f.read()
    return None


def test_images(data, n):
    """(C, H, W, list of n images as bytes in CHW order)."""
    idx = read_maybe_gz(os.path.join(data, "t10k-images-idx3-ubyte"))
    if idx is not None:
        magic, count, h, w = struct.unpack(">IIII", idx[:16])
        assert magic == 0x803, "not an IDX image file"
        d = h * w
        return 1, h, w, [idx[16 + i * d:16 + (i + 1) * d] for i in range(min(n, count))]
    cifar = read_maybe_gz(os.path.join(data, "test_batch.bin"))
    if cifar is not None:
        rec = 1 + 3072
        count = len(cifar) // rec
        return 3, 32, 32, [cifar[i * rec + 1:(i + 1) * rec] for i in range(min(n, count))]
    sys.exit("codec_baselines: no t10k-images-idx3-ubyte or test_batch.bin in " + data)


def png_bytes(c, h, w, rows):
    """A PNG of h rows (each w*c bytes, interleaved for RGB), filter 0, zlib 9."""
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    raw = b"".join(b"\0" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) +
            chunk(b"IEND", b""))


def rows_of(c, h, w, img):
    """CHW planes -> h interleaved rows."""
    if c == 1:
        return [img[y * w:(y + 1) * w] for y in range(h)]
    plane = h * w
    return [bytes(img[ch * plane + y * w + x] for x in range(w) for ch in range(3))
            for y in range(h)]


def grid_rows(c, h, w, images):
    cols = math.ceil(math.sqrt(len(images)))
    nrows = math.ceil(len(images) / cols)
    blank = bytes(w * c)
    per_image = [rows_of(c, h, w, im) for im in images]
    rows = []
    for gy in range(nrows):
        for y in range(h):
            parts = []
            for gx in range(cols):
                k = gy * cols + gx
                parts.append(per_image[k][y] if k < len(images) else blank)
            rows.append(b"".join(parts))
    return rows, cols * w, nrows * h


CODECS = [
    ("PNG (optipng -o7)", ".png", lambda src, dst: ["optipng", "-quiet", "-o7", "-out", dst, src]),
    ("WebP lossless (cwebp -lossless -z 9)", ".webp",
     lambda src, dst: ["cwebp", "-quiet", "-lossless", "-z", "9", src, "-o", dst]),
    ("JPEG XL lossless (cjxl -d 0 -e 9)", ".jxl",
     lambda src, dst: ["cjxl", "--quiet", "-d", "0", "-e", "9", src, dst]),
]


def compressed_size(cmd, src, dst):
    if os.path.exists(dst):
        os.remove(dst)
    subprocess.run(cmd(src, dst), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.getsize(dst)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    data, n, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    c, h, w, images = test_images(data, n)
    n = len(images)
    os.makedirs(os.path.join(work, "images"), exist_ok=True)
    singles = []
    for i, im in enumerate(images):
        p = os.path.join(work, "images", "%06d.png" % i)
        with open(p, "wb") as f:
            f.write(png_bytes(c, h, w, rows_of(c, h, w, im)))
        singles.append(p)
    rows, gw, gh = grid_rows(c, h, w, images)
    grid = os.path.join(work, "grid.png")
    with open(grid, "wb") as f:
        f.write(png_bytes(c, gh, gw, rows))
    dims = n * c * h * w
    for name, ext, cmd in CODECS:
        total = sum(compressed_size(cmd, p, p[:-4] + ".out" + ext) for p in singles)
        g = compressed_size(cmd, grid, os.path.join(work, "grid.out" + ext))
        print("%s\t%d\t%.4f\t%d\t%.4f" % (name, total, 8.0 * total / dims, g, 8.0 * g / dims))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
