#!/bin/sh
# The figures of docs/codec.md, "Results": one model's codec against its own
# bounds and against PNG, WebP and JPEG XL on the same images, and the codec's
# speed. Not part of make check (it takes an hour or more).
#
#   sh scripts/deps.sh bench      # optipng, webp, libjxl-tools, python3
#   make programs bench
#   sh bench/codec.sh --checkpoint run/model.ckpt --data /usr/share/datasets/fashion-mnist \
#       [--limit 1000] [--samples 150] [--threads 2] [--speed] [--work DIR]
#       [--baselines TSV]
#
# Steps (each prints what it ran; the work files stay in DIR, default
# /tmp/agave-codec-bench):
#  1. agave-compress --limit N into DIR/test.agz (the summary line itemises
#     the bits), agave-decompress back into an IDX file compared byte for
#     byte with the first N test images;
#  2. agave-eval --limit N --samples K: the model's negative ELBO and IWAE_K
#     on the same images;
#  3. bench/codec_baselines.py: PNG, WebP and JPEG XL, per image and all N
#     images in one grid image (--baselines TSV: take its output from an
#     earlier run on the same data and N instead; they do not depend on the
#     model and take long on CIFAR-10);
#  4. with --speed: build/bench/codec_speed, 256 images, batch 64, on 1 and 2
#     threads, three runs each, under flock /work/coord/bench.lock (the
#     lock of timed measurements on the shared development machine; set
#     BENCH_LOCK to another file elsewhere).
# Then one Markdown block with the tables.
set -eu

build=${AGAVE_BUILD:-build}
ckpt="" data="" limit=1000 samples=150 threads=2 speed=0 work=/tmp/agave-codec-bench baselines=""
while [ $# -gt 0 ]; do
    case $1 in
    --checkpoint) ckpt=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --samples) samples=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --speed) speed=1; shift ;;
    --work) work=$2; shift 2 ;;
    --baselines) baselines=$2; shift 2 ;;
    *) echo "codec.sh: unknown argument $1 (see the header of bench/codec.sh)" >&2; exit 2 ;;
    esac
done
[ -n "$ckpt" ] && [ -n "$data" ] || { echo "codec.sh: --checkpoint and --data are required" >&2; exit 2; }
for tool in optipng cwebp cjxl python3; do
    command -v $tool >/dev/null 2>&1 || { echo "codec.sh: $tool is missing (sh scripts/deps.sh bench)" >&2; exit 2; }
done
mkdir -p "$work"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
log() { echo "codec.sh: $*" >&2; }

# 1. the codec
log "agave-compress --limit $limit --threads $threads"
start=$(date +%s)
"$build/bin/agave-compress" --checkpoint "$ckpt" --data "$data" --limit "$limit" \
    --threads "$threads" --out "$work/test.agz" >"$work/compress.txt" 2>"$work/compress.err"
mid=$(date +%s)
"$build/bin/agave-decompress" --checkpoint "$ckpt" --idx "$work/test.idx" "$work/test.agz" \
    >"$work/decompress.txt" 2>"$work/decompress.err"
end=$(date +%s)
log "$(cat "$work/compress.txt") [$((mid - start)) s; decompressed in $((end - mid)) s]"
python3 - "$data" "$limit" "$work/test.idx" <<'PY'
import gzip, os, sys
data, n, out = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "rb").read()
for name, skip, rec in (("t10k-images-idx3-ubyte", 16, None), ("test_batch.bin", 0, 3073)):
    for p in (os.path.join(data, name), os.path.join(data, name) + ".gz"):
        if os.path.exists(p):
            raw = (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
            body = out[16:] if out[3] == 3 else out[20:]
            if rec is None:
                want = raw[skip:skip + len(body)]
            else:
                want = b"".join(raw[i * rec + 1:(i + 1) * rec] for i in range(len(body) // 3072))
            if body != want:
                sys.exit("codec.sh: the decompressed images differ from the originals")
            print("codec.sh: decompressed %d bytes identical to the originals" % len(body), file=sys.stderr)
            sys.exit(0)
sys.exit("codec.sh: no test file to compare with")
PY

# 2. the model's bounds on the same images
log "agave-eval --limit $limit --samples $samples"
"$build/bin/agave-eval" --checkpoint "$ckpt" --data "$data" --limit "$limit" --samples "$samples" \
    --threads "$threads" --json >"$work/eval.json" 2>"$work/eval.err"
log "$(cat "$work/eval.json")"

# 3. classical codecs
if [ -n "$baselines" ]; then
    log "PNG, WebP, JPEG XL: taken from $baselines"
    cp "$baselines" "$work/baselines.tsv"
else
    log "PNG, WebP, JPEG XL on the same images (bench/codec_baselines.py)"
    python3 "$(dirname "$0")/codec_baselines.py" "$data" "$limit" "$work/baselines" >"$work/baselines.tsv"
fi

# 4. speed
if [ $speed = 1 ]; then
    : >"$work/speed.txt"
    for t in 1 2; do
        log "codec_speed, $t thread(s), under flock ${BENCH_LOCK:-/work/coord/bench.lock}"
        flock "${BENCH_LOCK:-/work/coord/bench.lock}" "$build/bench/codec_speed" "$ckpt" "$data" \
            256 64 "$t" 3 >>"$work/speed.txt"
    done
fi

# The tables
python3 - "$work" "$limit" "$ckpt" <<'PY'
import json, re, sys
work, n, ckpt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
line = open(work + "/compress.txt").read().strip()
m = re.search(r"(\d+) bytes, ([\d.]+) bits/dim \(pixels ([\d.]+) \[([\d.]+) unquantised\] \+ "
              r"latent prior ([\d.]+) - bits back ([\d.]+) = ([\d.]+), initial bits ([\d.]+), "
              r"container ([\d.]+)\)", line)
size, total, pix, pix_float, prior, back, net, init, cont = m.groups()
ev = json.load(open(work + "/eval.json"))
print("Model %s, first %d test images:\n" % (ckpt, n))
print("| | bits/dim |\n|---|---|")
print("| negative ELBO (agave-eval) | %.4f |" % ev["elbo_bpd"])
print("| negative IWAE_%d (agave-eval) | %.4f |" % (ev["iwae_samples"], ev["iwae_bpd"]))
print("| the .agz file, %s bytes | **%s** |" % (size, total))
print("| = pixels under the integer tables | %s |" % pix)
print("| + latent buckets under the prior | %s |" % prior)
print("| - bits back (latent buckets under the posterior) | %s |" % back)
print("| + initial bits | %s |" % init)
print("| + container (header, chunk framing, CRCs) | %s |" % cont)
print("| overheads: quantisation of the pixel tables (pixels - the same under the model's floats) | %.4f |"
      % (float(pix) - float(pix_float)))
print("| overheads: latent buckets and one sample (pixels unquantised + prior - bits back - ELBO) | %.4f |"
      % (float(pix_float) + float(prior) - float(back) - ev["elbo_bpd"]))
print("| overheads: initial bits + container | %.4f |" % (float(init) + float(cont)))
print()
print("| codec | per image, bits/dim | all %d images in one file, bits/dim |\n|---|---|---|" % n)
for row in open(work + "/baselines.tsv"):
    name, _, per, _, grid = row.rstrip("\n").split("\t")
    print("| %s | %s | %s |" % (name, per, grid))
print("| agave codec (.agz) | %s | %s |" % (total, total))
try:
    print()
    for row in open(work + "/speed.txt"):
        print("    " + row.rstrip())
except FileNotFoundError:
    pass
PY
